"""Two real server processes on one data directory see each other's writes at once.

Each process keeps its own in-memory HNSW graphs and reads the shared Tantivy index and
SQLite file; a write through one must show in the other's very next read (DESIGN §1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import running_server

pytestmark = pytest.mark.slow

COLLECTION = "shared"
OTTERS = "kb/otters.md"


@pytest.fixture(scope="module")
def servers(make_data_dir: Callable[[], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    data_dir = make_data_dir()
    logs = tmp_path_factory.mktemp("server-logs")
    with (
        running_server(data_dir, logs, name="server1") as one,
        running_server(data_dir, logs, name="server2") as two,
    ):
        yield [one.url, two.url]


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
        assert ready.json() == {"status": "ready", "checks": {"store": "ok", "embedder": "ok", "warm_up": "ok"}}
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<title>ragserve</title>" in page.text
