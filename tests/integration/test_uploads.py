"""`POST /v1/documents/upload` and `GET /v1/jobs/{id}` end to end, in process.

Each app here runs over the session's RAG (documents land in a collection of the test's
own) but keeps its jobs database and staged uploads in a data directory of its own, so
no other app's worker can take its jobs.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docx
import httpx
import pytest
import sqlalchemy as sa
from asgi import serve
from reportlab.pdfgen import canvas

from ragserve.ingest.jobs import Job
from ragserve.ingest.jobs_sql import SQLJobStore
from ragserve.ingest.upload import SUPPORTED_FORMATS
from ragserve.ingest.upload_jobs import UPLOADS_DIR, Uploads
from ragserve.rag import RAG
from ragserve.relational.database import jobs
from ragserve.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

Client = httpx.AsyncClient
FileSpec = tuple[str, bytes, str]
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def make_pdf(text: str, title: str | None = None) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    if title:
        pdf.setTitle(title)
    pdf.drawString(72, 720, text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_docx(heading: str, text: str) -> bytes:
    document = docx.Document()
    document.add_heading(heading, level=1)
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def settings_for(rag: RAG, data_dir: Path, **overrides: Any) -> Settings:
    return rag.settings.model_copy(update={"data_dir": data_dir, **overrides})


@pytest.fixture
async def client(shared_rag: RAG, tmp_path: Path) -> AsyncIterator[Client]:
    async with serve(settings_for(shared_rag, tmp_path), shared_rag) as c:
        yield c


async def upload(
    client: Client, collection: str | None, *files: FileSpec, metadata: Any = None, **extra: str
) -> httpx.Response:
    data = dict(extra)
    if collection is not None:
        data["collection"] = collection
    if metadata is not None:
        data["metadata"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return await client.post("/v1/documents/upload", files=[("files", f) for f in files], data=data)


def created(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def error_of(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    error: dict[str, str] = body["error"]
    assert set(error) == {"type", "message", "request_id"}
    assert error["request_id"] == r.headers["x-request-id"]
    return error


async def found(client: Client, collection: str, query: str) -> list[str]:
    """Ids of the documents with chunks matching `query`, best first, each once."""
    body = {"query": query, "collection": collection, "mode": "keyword", "top_k": 100}
    r = await client.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    return list(dict.fromkeys(hit["document_id"] for hit in r.json()["results"]))


async def wait_job(client: Client, url: str, limit_s: float = 60) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The finished job and every progress snapshot seen while polling."""
    deadline = time.monotonic() + limit_s
    snapshots = []
    while True:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        snapshots.append(job["progress"])
        if job["state"] in ("succeeded", "failed"):
            return job, snapshots
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        await asyncio.sleep(0.05)


def assert_progress_consistent(snapshots: list[dict[str, Any]]) -> None:
    for p in snapshots:
        assert 0 <= p["files_parsed"] <= p["files_total"]
        assert 0 <= p["documents_done"] <= p["documents_total"]
    for before, after in itertools.pairwise(snapshots):
        assert after["files_parsed"] >= before["files_parsed"]
        assert after["chunks_done"] >= before["chunks_done"]


def multipart(collection: str, *parts: tuple[bytes, bytes]) -> tuple[bytes, str]:
    """A multipart body written by hand: raw filename bytes that no client library would send."""
    boundary = b"ragserve-test-boundary"
    body = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="collection"\r\n\r\n'
    body += collection.encode() + b"\r\n"
    for filename, content in parts:
        body += b"--" + boundary + b"\r\n"
        body += b'Content-Disposition: form-data; name="files"; filename="' + filename + b'"\r\n'
        body += b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
    body += b"--" + boundary + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary.decode()}"


# ------------------------------------------------------------------ inline


async def test_inline_upload_of_every_format_is_searchable(client: Client, collection: str) -> None:
    files: list[FileSpec] = [
        ("notes.txt", b"Marmalade is made from bitter oranges.", "text/plain"),
        ("guide.md", b"# Guide\n\n## Setup\n\nInstall the xylophone driver first.", "text/markdown"),
        ("page.html", b"<html><body><h1>Page</h1><p>Quokkas smile a lot.</p></body></html>", "text/html"),
        ("report.pdf", make_pdf("Zeppelins float over the harbour.", title="Report"), "application/pdf"),
        ("memo.docx", make_docx("Memo", "Narwhals have one long tusk."), "application/octet-stream"),
        ("rows.jsonl", b'{"id": "row-1", "text": "Capybaras enjoy warm baths."}\n', "application/json"),
    ]
    body = created(await upload(client, collection, *files, metadata={"batch": "b1"}))
    assert body["collection"] == collection
    assert body["errors"] == []
    by_id = {r["id"]: r for r in body["results"]}
    assert {i: (r["filename"], r["format"], r["status"], r["version"]) for i, r in by_id.items()} == {
        "notes.txt": ("notes.txt", "text", "created", 1),
        "guide.md": ("guide.md", "markdown", "created", 1),
        "page.html": ("page.html", "html", "created", 1),
        "report.pdf": ("report.pdf", "pdf", "created", 1),
        "memo.docx": ("memo.docx", "docx", "created", 1),
        "row-1": ("rows.jsonl", "jsonl", "created", 1),
    }
    assert all(r["chunks"] >= 1 for r in body["results"])
    assert body["chunks"] == sum(r["chunks"] for r in body["results"])

    for word, doc_id in [
        ("marmalade", "notes.txt"),
        ("xylophone", "guide.md"),
        ("quokkas", "page.html"),
        ("zeppelins", "report.pdf"),
        ("narwhals", "memo.docx"),
        ("capybaras", "row-1"),
    ]:
        assert await found(client, collection, word) == [doc_id], word
    r = await client.get("/v1/documents/report.pdf", params={"collection": collection})
    doc = r.json()
    assert (doc["source"], doc["title"], doc["metadata"]) == ("report.pdf", "Report", {"batch": "b1"})

    again = created(await upload(client, collection, *files, metadata={"batch": "b1"}))
    assert {r["status"] for r in again["results"]} == {"unchanged"}
    assert again["chunks"] == 0
    retagged = created(await upload(client, collection, files[0], metadata={"batch": "b2"}))
    assert [(r["id"], r["status"], r["version"]) for r in retagged["results"]] == [("notes.txt", "updated", 2)]


async def test_lying_names_and_content_types_are_parsed_by_content(client: Client, collection: str) -> None:
    body = created(
        await upload(
            client,
            collection,
            ("invoice.txt", make_pdf("Albatross invoices are due."), "text/plain"),
            ("data.json", b"<!doctype html><html><body><p>Walrus pages.</p></body></html>", "application/json"),
            ("photo.png", b"Plain words about a wombat.", "image/png"),
            ("sheet.pdf", make_docx("Sheet", "Okapi rows."), "application/pdf"),
        )
    )
    assert body["errors"] == []
    assert {r["filename"]: r["format"] for r in body["results"]} == {
        "invoice.txt": "pdf",
        "data.json": "html",
        "photo.png": "text",
        "sheet.pdf": "docx",
    }
    assert await found(client, collection, "albatross") == ["invoice.txt"]
    assert await found(client, collection, "walrus") == ["data.json"]
    assert await found(client, collection, "wombat") == ["photo.png"]
    assert await found(client, collection, "okapi") == ["sheet.pdf"]


async def test_binary_file_fails_alone_and_alone_is_415(client: Client, collection: str) -> None:
    body = created(
        await upload(
            client, collection, ("readme.txt", b"Pangolins curl up.", "text/plain"), ("logo.png", BINARY, "image/png")
        )
    )
    assert [r["id"] for r in body["results"]] == ["readme.txt"]
    [error] = body["errors"]
    assert (error["filename"], error["type"]) == ("logo.png", "unsupported_media_type")
    assert "'logo.png'" in error["message"] and SUPPORTED_FORMATS in error["message"]
    assert await found(client, collection, "pangolins") == ["readme.txt"]

    only = error_of(await upload(client, collection, ("tool.txt", b"\x7fELF\x02\x01" + BINARY, "text/plain")), 415)
    assert only["type"] == "unsupported_media_type"
    assert "'tool.txt'" in only["message"] and SUPPORTED_FORMATS in only["message"]


async def test_every_file_failing_to_parse_is_422_naming_each(client: Client, collection: str) -> None:
    error = error_of(
        await upload(
            client,
            collection,
            ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf", "application/pdf"),
            ("bad.json", b'{"text": "unterminated', "application/json"),
            ("blank.txt", b"   \n", "text/plain"),
        ),
        422,
    )
    assert error["type"] == "parse_error"
    assert "no file could be ingested" in error["message"]
    for name in ("'broken.pdf'", "'bad.json'", "'blank.txt'"):
        assert name in error["message"]
    assert (await client.get("/v1/documents", params={"collection": collection})).json()["total"] == 0


async def test_oversized_file_is_413_naming_it(shared_rag: RAG, tmp_path: Path, collection: str) -> None:
    settings = settings_for(shared_rag, tmp_path, max_file_bytes=1024)
    async with serve(settings, shared_rag) as client:
        error = error_of(await upload(client, collection, ("huge.txt", b"x " * 1500, "text/plain")), 413)
        assert error["type"] == "payload_too_large"
        assert "'huge.txt'" in error["message"] and "1,024" in error["message"]

        body = created(
            await upload(
                client, collection, ("huge.txt", b"x " * 1500, "text/plain"), ("ok.txt", b"Ibex climb.", "text/plain")
            )
        )
        assert [r["id"] for r in body["results"]] == ["ok.txt"]
        assert [(e["filename"], e["type"]) for e in body["errors"]] == [("huge.txt", "payload_too_large")]


async def test_upload_path_has_its_own_request_limit(shared_rag: RAG, tmp_path: Path, collection: str) -> None:
    settings = settings_for(shared_rag, tmp_path, max_request_bytes=2048, max_upload_bytes=8192)
    async with serve(settings, shared_rag) as client:
        # Over the general limit, under the upload one: accepted.
        three_kb = ("a.txt", b"Tapirs forage at night. " * 128, "text/plain")
        created(await upload(client, collection, three_kb))
        # The general limit still holds everywhere else.
        big_json = {"collection": collection, "documents": [{"text": "y" * 3000}]}
        assert error_of(await client.post("/v1/documents", json=big_json), 413)["type"] == "payload_too_large"
        # Over the upload limit: the body is refused before any file is read.
        files = [(f"f{i}.txt", b"z " * 1500, "text/plain") for i in range(3)]
        error = error_of(await upload(client, collection, *files), 413)
        assert error["type"] == "payload_too_large" and "8192" in error["message"]
        listed = (await client.get("/v1/documents", params={"collection": collection})).json()
        assert [d["id"] for d in listed["documents"]] == ["a.txt"]


async def test_hostile_filenames_are_sanitised(client: Client, collection: str, tmp_path: Path) -> None:
    long_name = b"L" * 300 + b".txt"
    body, content_type = multipart(
        collection,
        (b"../../etc/passwd", b"Root was here: lemurs."),
        (b"evil\x00na\x1fme.txt", b"Control characters: mongooses."),
        (long_name, b"A very long name: meerkats."),
        (b"..", b"Only dots: axolotls."),
    )
    result = created(await client.post("/v1/documents/upload", content=body, headers={"content-type": content_type}))
    ids = [d["id"] for d in result["results"]]
    assert ids[:2] == ["passwd", "evilname.txt"]
    assert len(ids[2]) == 120 and ids[2].endswith("L.txt")
    assert ids[3] == "upload"
    for doc_id in ids:
        assert "/" not in doc_id and "\x00" not in doc_id and ".." not in doc_id
        doc = (await client.get(f"/v1/documents/{doc_id}", params={"collection": collection})).json()
        assert doc["source"] == doc_id
    assert await found(client, collection, "lemurs") == ["passwd"]
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc").exists()


async def test_bad_form_fields_are_4xx(client: Client, collection: str) -> None:
    file = ("a.txt", b"Some text.", "text/plain")
    for metadata in ("not json", "[1, 2]", '"a string"'):
        error = error_of(await upload(client, collection, file, metadata=metadata), 400)
        assert "metadata" in error["message"]
    assert "collection" in error_of(await upload(client, "../bad name", file), 422)["message"]
    missing = error_of(await client.post("/v1/documents/upload", data={"collection": collection}), 422)
    assert "files" in missing["message"]


# --------------------------------------------------------------------- jobs


async def test_large_upload_becomes_a_job(shared_rag: RAG, tmp_path: Path, collection: str) -> None:
    settings = settings_for(shared_rag, tmp_path, upload_inline_bytes=64)
    files: list[FileSpec] = [
        (f"part-{i}.txt", f"Part {i} describes the chinchilla number {i}. ".encode() * 40, "text/plain")
        for i in range(4)
    ]
    files.append(("scan.pdf", make_pdf("Flamingos stand on one leg."), "application/pdf"))
    async with serve(settings, shared_rag) as client:
        r = await upload(client, collection, *files, metadata={"batch": "job"})
        assert r.status_code == 202, r.text
        accepted = r.json()
        job_id = accepted["job_id"]
        assert accepted["status_url"] == r.headers["location"] == f"/v1/jobs/{job_id}"
        assert accepted["state"] == "queued" and accepted["collection"] == collection
        assert [(f["filename"], f["format"]) for f in accepted["files"]] == [
            *((f"part-{i}.txt", "text") for i in range(4)),
            ("scan.pdf", "pdf"),
        ]
        assert accepted["errors"] == []
        assert accepted["request_id"] == r.headers["x-request-id"]

        job, snapshots = await wait_job(client, accepted["status_url"])
        assert job["state"] == "succeeded", job
        assert (job["id"], job["collection"], job["attempts"], job["errors"], job["error"]) == (
            job_id,
            collection,
            1,
            [],
            None,
        )
        assert_progress_consistent(snapshots)
        progress, result = job["progress"], job["result"]
        assert progress["stage"] == "done"
        assert progress["files_total"] == progress["files_parsed"] == 5
        assert progress["documents_total"] == progress["documents_done"] == 5
        assert progress["chunks_done"] == result["chunks"] == sum(d["chunks"] for d in result["documents"]) > 0
        assert (result["created"], result["updated"], result["unchanged"]) == (5, 0, 0)
        assert job["created_at"] <= job["started_at"] <= job["finished_at"]

        assert await found(client, collection, "flamingos") == ["scan.pdf"]
        assert sorted(await found(client, collection, "chinchilla")) == [f"part-{i}.txt" for i in range(4)]
        doc = (await client.get("/v1/documents/part-0.txt", params={"collection": collection})).json()
        assert doc["metadata"] == {"batch": "job"}
        assert not (tmp_path / UPLOADS_DIR / job_id).exists()  # staged files are gone once it finished


async def test_job_with_bad_files_lists_them_and_ingests_the_rest(
    shared_rag: RAG, tmp_path: Path, collection: str
) -> None:
    settings = settings_for(shared_rag, tmp_path, upload_inline_bytes=0)
    async with serve(settings, shared_rag) as client:
        r = await upload(
            client,
            collection,
            ("good.txt", b"Hedgehogs hibernate in winter.", "text/plain"),
            ("broken.pdf", b"%PDF-1.7\ngarbage without any objects", "application/pdf"),
            ("blob.bin", BINARY, "application/octet-stream"),
        )
        assert r.status_code == 202, r.text
        accepted = r.json()
        # The binary is refused up front; the broken PDF looks like a PDF until the job parses it.
        assert [e["filename"] for e in accepted["errors"]] == ["blob.bin"]
        assert [f["filename"] for f in accepted["files"]] == ["good.txt", "broken.pdf"]

        job, _ = await wait_job(client, accepted["status_url"])
        assert job["state"] == "succeeded"
        assert {(e["filename"], e["type"]) for e in job["errors"]} == {
            ("blob.bin", "unsupported_media_type"),
            ("broken.pdf", "parse_error"),
        }
        assert [d["id"] for d in job["result"]["documents"]] == ["good.txt"]
        assert job["progress"]["files_parsed"] == 2
        assert await found(client, collection, "hedgehogs") == ["good.txt"]

        failing = await upload(client, collection, ("broken.pdf", b"%PDF-1.7\nnothing", "application/pdf"))
        assert failing.status_code == 202
        job, _ = await wait_job(client, failing.json()["status_url"])
        assert (job["state"], job["error"], job["result"]["documents"]) == ("failed", "no file could be ingested", [])


async def test_unknown_and_foreign_jobs_are_404(shared_rag: RAG, tmp_path: Path, collection: str) -> None:
    settings = settings_for(shared_rag, tmp_path, upload_inline_bytes=0)
    async with serve(settings, shared_rag) as client:
        error = error_of(await client.get("/v1/jobs/no-such-job"), 404)
        assert error["type"] == "not_found" and "no-such-job" in error["message"]
        r = await upload(client, collection, ("t.txt", b"Tenant A's file about yaks.", "text/plain"))
        status_url = r.json()["status_url"]
        await wait_job(client, status_url)

    other_tenant = RAG(
        settings=shared_rag.settings.model_copy(update={"default_tenant": "tenant-b"}),
        embedder=shared_rag.embedder,
        store=shared_rag.store,
        generator=shared_rag.generator,
        pipeline=shared_rag.pipeline,
        retriever=shared_rag.retriever,
    )
    async with serve(settings_for(other_tenant, tmp_path), other_tenant) as client_b:
        assert error_of(await client_b.get(status_url), 404)["type"] == "not_found"


class Incoming:
    """An uploaded file as the web framework would hand it over."""

    def __init__(self, filename: str, data: bytes) -> None:
        self.filename: str | None = filename
        self.size: int | None = len(data)
        self._data = data

    async def read(self, size: int = -1) -> bytes:
        return self._data


async def test_job_of_a_dead_process_is_requeued_and_completed(
    shared_rag: RAG, tmp_path: Path, collection: str
) -> None:
    # A process queues a job, claims it, and dies: its heartbeat stops and grows old.
    store = await SQLJobStore.open(None, tmp_path)
    try:
        uploads = Uploads(store, shared_rag.pipeline, tmp_path / UPLOADS_DIR, max_file_bytes=1 << 20, inline_bytes=0)
        queued = await uploads.receive(shared_rag.scope(collection), [Incoming("orphan.txt", b"Dingoes howl.")])
        assert isinstance(queued, Job)
        claimed = await store.claim("dead-process/1")
        assert claimed is not None and claimed.id == queued.id
        aged = sa.update(jobs).where(jobs.c.id == queued.id).values(heartbeat_at=time.time() - 3600)
        store.db.run_sync(lambda conn: conn.execute(aged))
    finally:
        await store.aclose()

    # Another process starts over the same data directory and finishes the job.
    async with serve(settings_for(shared_rag, tmp_path), shared_rag) as client:
        job, _ = await wait_job(client, f"/v1/jobs/{queued.id}")
        assert (job["state"], job["attempts"]) == ("succeeded", 2)
        assert [d["id"] for d in job["result"]["documents"]] == ["orphan.txt"]
        assert await found(client, collection, "dingoes") == ["orphan.txt"]
    assert not (tmp_path / UPLOADS_DIR / queued.id).exists()
