"""Metrics, access logs and multi-worker serving, observed from outside.

In process: an app over the session's RAG, driven through httpx's ASGI transport. Across
processes: `ragserve serve --workers 2` (gunicorn + uvicorn workers) as a subprocess,
whose `/metrics` must add up every worker's requests whichever worker answers.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from asgi import serve
from fastapi.responses import StreamingResponse
from servers import running_server

from ragserve.api.app import create_app
from ragserve.observability.logging import configure_logging
from ragserve.rag import RAG

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# ------------------------------------------------------------------ helpers


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for every sample line of a text exposition."""
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(LABEL.findall(match["labels"] or ""))
            found.append((match["name"], labels, float(match["value"])))
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    return sum(v for n, ls, v in samples(text) if n == name and labels.items() <= ls.items())


def increase(before: str, after: str, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# ------------------------------------------------------------------ in process


@pytest.mark.asyncio(loop_scope="session")
async def test_metrics_exposition_passes_promtool(shared_rag: RAG, collection: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (Debian: apt-get install prometheus)")
    async with serve(shared_rag.settings, shared_rag, raise_app_exceptions=False) as client:
        r = await client.post("/v1/documents", json={"collection": collection, "documents": [{"text": "Otters."}]})
        assert r.status_code == 201, r.text
        await client.post("/v1/search", json={"query": "otters", "collection": collection})
        await client.get("/v1/documents/nope", params={"collection": collection})
        r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=r.content, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    for family in ("rag_request_latency_seconds", "rag_stage_duration_seconds"):
        assert f"# TYPE {family} histogram" in r.text
    for family in ("rag_requests_total", "rag_errors_total", "rag_ingest_chunks_total"):
        assert f"# TYPE {family} counter" in r.text
    totals = await shared_rag.totals()
    assert value(r.text, "rag_documents") == totals.documents >= 1
    assert value(r.text, "rag_chunks") == totals.chunks >= 1
    assert value(r.text, "rag_ingest_queue_depth") == 0  # read from the job store at scrape time
    assert value(r.text, "rag_ingest_jobs_running") == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_request_counters_move_by_exactly_the_requests_made(shared_rag: RAG, collection: str) -> None:
    async with serve(shared_rag.settings, shared_rag, raise_app_exceptions=False) as client:
        before = (await client.get("/metrics")).text
        for _ in range(3):
            assert (await client.get("/health/live")).status_code == 200
        for n in range(2):
            r = await client.get(f"/v1/documents/missing-{n}", params={"collection": collection})
            assert r.status_code == 404
        assert (await client.get("/no/such/route")).status_code == 404
        r = await client.post("/v1/search", json={"query": "anything", "collection": collection})
        assert r.status_code == 200
        # As `curl -d` sends it: labelled a form, so the JSON-body middleware rewrites the scope.
        form_labelled = json.dumps({"query": "anything", "collection": collection})
        r = await client.post(
            "/v1/search", content=form_labelled, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 200, r.text
        assert (await client.post("/v1/search", json={"collection": collection})).status_code == 422
        after = (await client.get("/metrics")).text

    def moved(name: str, **labels: str) -> float:
        return increase(before, after, name, **labels)

    assert moved("rag_requests_total", endpoint="/health/live", status="200") == 3
    assert moved("rag_requests_total", endpoint="/v1/documents/{document_id}", status="404") == 2
    assert moved("rag_requests_total", endpoint="unmatched", status="404") == 1
    assert moved("rag_requests_total", endpoint="/v1/search", status="200") == 2
    assert moved("rag_requests_total", endpoint="/v1/search", status="422") == 1
    assert moved("rag_requests_total", endpoint="/metrics", status="200") == 1  # the first scrape
    assert moved("rag_request_latency_seconds_count", endpoint="/v1/documents/{document_id}") == 2
    assert moved("rag_errors_total", type="not_found") == 3
    assert moved("rag_errors_total", type="validation_error") == 1
    # Label sets stay bounded: no raw paths.
    assert not [ls for n, ls, _ in samples(after) if "missing-" in ls.get("endpoint", "")]


@pytest.mark.asyncio(loop_scope="session")
async def test_an_unhandled_error_is_a_counted_and_logged_500(shared_rag: RAG, restore_root_logging: None) -> None:
    app = create_app(shared_rag.settings, rag=shared_rag)

    @app.get("/v1/boom/{n}")
    async def boom(n: int) -> None:
        raise RuntimeError("the Bearer abc.def token leaked into an exception")

    stream = io.StringIO()
    async with serve(shared_rag.settings, shared_rag, app, raise_app_exceptions=False) as client:
        configure_logging(shared_rag.settings.model_copy(update={"log_format": "json"}), stream=stream)
        before = (await client.get("/metrics")).text
        r = await client.get("/v1/boom/1", headers={"X-Request-ID": "boom-1"})
        assert r.status_code == 500
        assert r.json()["error"] == {
            "type": "internal_error",
            "message": "internal error; see the server log",
            "request_id": "boom-1",
        }
        after = (await client.get("/metrics")).text

    assert increase(before, after, "rag_requests_total", endpoint="/v1/boom/{n}", status="500") == 1
    assert increase(before, after, "rag_errors_total", type="internal_error") == 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    access = [line for line in lines if line.get("event") == "request" and line.get("request_id") == "boom-1"]
    assert [(a["route"], a["status"]) for a in access] == [("/v1/boom/{n}", 500)]
    assert any("RuntimeError" in line.get("exception", "") for line in lines)
    assert "abc.def" not in stream.getvalue()


@pytest.mark.asyncio(loop_scope="session")
async def test_latency_runs_to_the_end_of_a_streamed_body(shared_rag: RAG, restore_root_logging: None) -> None:
    app = create_app(shared_rag.settings, rag=shared_rag)

    @app.get("/v1/slow-stream")
    async def slow_stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                await asyncio.sleep(0.1)
                yield b"chunk\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    stream = io.StringIO()
    async with serve(shared_rag.settings, shared_rag, app, raise_app_exceptions=False) as client:
        configure_logging(shared_rag.settings.model_copy(update={"log_format": "json"}), stream=stream)
        before = (await client.get("/metrics")).text
        r = await client.get("/v1/slow-stream", headers={"X-Request-ID": "slow-1"})
        assert r.text == "chunk\n" * 3
        after = (await client.get("/metrics")).text

    assert increase(before, after, "rag_request_latency_seconds_count", endpoint="/v1/slow-stream") == 1
    assert increase(before, after, "rag_request_latency_seconds_sum", endpoint="/v1/slow-stream") >= 0.3
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    [access] = [line for line in lines if line.get("request_id") == "slow-1"]
    assert access["latency_ms"] >= 300


@pytest.mark.asyncio(loop_scope="session")
async def test_access_log_is_one_json_line_with_ids_and_no_raw_query(
    shared_rag: RAG, collection: str, restore_root_logging: None
) -> None:
    secret_query = "zebra-quokka-7781 what is the meaning of the marmalade protocol?"
    stream = io.StringIO()
    settings = shared_rag.settings.model_copy(update={"log_format": "json", "log_level": "debug"})
    async with serve(settings, shared_rag, raise_app_exceptions=False) as client:
        configure_logging(settings, stream=stream)
        r = await client.post(
            "/v1/query",
            json={"query": secret_query, "collection": collection},
            headers={"X-Request-ID": "obs-test-42"},
        )
        assert r.status_code == 200, r.text
        assert (await client.get("/health/live")).status_code == 200

    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    access = [line for line in lines if line.get("event") == "request" and line.get("request_id") == "obs-test-42"]
    assert len(access) == 1, lines
    line = access[0]
    assert line["level"] == "info"
    assert line["method"] == "POST" and line["route"] == "/v1/query" and line["status"] == 200
    assert line["latency_ms"] > 0
    assert line["timestamp"].endswith("Z")
    assert TRACE_ID.match(line.get("trace_id") or ""), line
    probe = [entry for entry in lines if entry.get("route") == "/health/live"]
    assert [entry["level"] for entry in probe] == ["debug"]
    assert "zebra-quokka-7781" not in stream.getvalue()


# ------------------------------------------------------------------ two workers


def scrape(url: str) -> str:
    # A new connection each time, so the kernel may hand it to either worker.
    r = httpx.get(f"{url}/metrics", timeout=30, headers={"Connection": "close"})
    assert r.status_code == 200, r.text
    return r.text


@pytest.mark.slow
def test_two_workers_report_every_request_whichever_answers_the_scrape(
    make_data_dir: Callable[[], Path], tmp_path: Path
) -> None:
    env = {"RAGSERVE_LOG_FORMAT": "json", "RAGSERVE_GRACEFUL_TIMEOUT_S": "10"}
    with running_server(make_data_dir(), tmp_path, "--workers", "2", env=env) as server:
        url = server.url
        for n in range(20):
            r = httpx.get(f"{url}/v1/documents/doc-{n}", timeout=30, headers={"Connection": "close"})
            assert r.status_code == 404, r.text
        for _ in range(8):
            text = scrape(url)
            assert value(text, "rag_requests_total", endpoint="/v1/documents/{document_id}", status="404") == 20
            assert value(text, "rag_request_latency_seconds_count", endpoint="/v1/documents/{document_id}") == 20
            assert value(text, "rag_errors_total", type="not_found") == 20
        code = server.stop()
    output = server.output()
    assert code == 0, output

    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("event") == "request" and r.get("route") == "/v1/documents/{document_id}"]
    assert len(access) == 20
    assert any("Booting worker" in r.get("event", "") for r in records), "gunicorn's own lines are JSON too"
    assert not [r for r in records if r.get("level") in ("error", "critical")], output
