"""Two real server processes on one data directory see each other's writes at once.

Each process keeps its own in-memory HNSW graphs and reads the shared Tantivy index and
SQLite file; a write through one must show in the other's very next read (DESIGN §1).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 90.0
COLLECTION = "shared"
OTTERS = "kb/otters.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server {url} exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"server {url} not ready after {READY_TIMEOUT_S}s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def servers(make_data_dir: Callable[[], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    data_dir = make_data_dir()
    logs = tmp_path_factory.mktemp("server-logs")
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for n in (1, 2):
            port = free_port()
            log = logs / f"server{n}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "ragserve.cli", "--data-dir", str(data_dir), "serve", "--port", str(port)],
                    cwd=logs,  # no stray .env from the working directory
                    env=os.environ.copy(),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            started.append((f"http://127.0.0.1:{port}", process, log))
        for url, process, log in started:
            wait_ready(url, process, log)
        yield [url for url, _, _ in started]
    finally:
        for _, process, _ in started:
            process.terminate()
        for _, process, _ in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def post(url: str, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = httpx.post(url + path, json=body, timeout=60)
    assert r.status_code == status, r.text
    result: dict[str, Any] = r.json()
    return result


def found(url: str, query: str, mode: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = post(url, "/v1/search", {"query": query, "collection": COLLECTION, "mode": mode})[
        "results"
    ]
    return results


def document(url: str, doc_id: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/documents/{doc_id}", params={"collection": COLLECTION}, timeout=60)


def test_writes_through_one_server_are_seen_by_the_other(servers: list[str]) -> None:
    one, two = servers
    created = post(
        one,
        "/v1/documents",
        {
            "collection": COLLECTION,
            "documents": [
                {"id": OTTERS, "text": "Sea otters hold hands while sleeping so that they do not drift apart."},
                {"id": "kb/tantivy.md", "text": "Tantivy is a full-text search engine library written in Rust."},
            ],
        },
        status=201,
    )
    assert {r["id"]: r["status"] for r in created["results"]} == {OTTERS: "created", "kb/tantivy.md": "created"}

    # Created through one, found by two: by keyword and by meaning.
    assert [r["document_id"] for r in found(two, "otters sleeping", "keyword")] == [OTTERS]
    assert found(two, "animals that hold paws during their naps", "dense")[0]["document_id"] == OTTERS
    assert document(two, OTTERS).json()["version"] == 1

    # Updated through one: two sees version 2 and only the new text.
    updated = post(
        one,
        "/v1/documents",
        {"collection": COLLECTION, "documents": [{"id": OTTERS, "text": "Sea otters crack shellfish with rocks."}]},
        status=201,
    )
    assert [(r["status"], r["version"]) for r in updated["results"]] == [("updated", 2)]
    assert document(two, OTTERS).json()["version"] == 2
    assert [r["document_id"] for r in found(two, "shellfish rocks", "keyword")] == [OTTERS]
    for mode in ("keyword", "dense", "hybrid"):
        texts = [r["text"] for r in found(two, "sea otters", mode) if r["document_id"] == OTTERS]
        assert texts == ["Sea otters crack shellfish with rocks."], mode
    assert found(two, "hold hands sleeping drift", "keyword") == []
    answer = post(two, "/v1/query", {"query": "What do sea otters crack with rocks?", "collection": COLLECTION})
    assert answer["answered"] is True
    assert [c["document_id"] for c in answer["citations"]] == [OTTERS]

    # Deleted through two: one no longer finds it.
    r = httpx.delete(f"{two}/v1/documents/{OTTERS}", params={"collection": COLLECTION}, timeout=60)
    assert r.status_code == 200, r.text
    assert document(one, OTTERS).status_code == 404
    for mode in ("keyword", "dense", "hybrid"):
        assert OTTERS not in [r["document_id"] for r in found(one, "sea otters crack shellfish with rocks", mode)]
    assert [r["document_id"] for r in found(one, "sea otters", "dense")] == ["kb/tantivy.md"]
    listed = httpx.get(f"{one}/v1/documents", params={"collection": COLLECTION}, timeout=60).json()
    assert [d["id"] for d in listed["documents"]] == ["kb/tantivy.md"]


def test_both_servers_are_ready_and_serve_the_page(servers: list[str]) -> None:
    for url in servers:
        ready = httpx.get(f"{url}/health/ready", timeout=10)
        assert ready.json() == {"status": "ready", "checks": {"store": "ok", "embedder": "ok"}}
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<title>ragserve</title>" in page.text
