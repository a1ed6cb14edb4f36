"""POST /v1/query with `stream: true`: sources, tokens, done; and typed errors mid-stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from asgi import serve
from sse_reader import parse_sse

from ragserve.errors import DependencyError
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.rag import RAG
from ragserve.types import ChatTurn, ScoredChunk

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCS = [
    {"id": "port.md", "text": "The server listens on port 8000 by default. Set RAGSERVE_PORT to choose another."},
    {"id": "store.md", "text": "Documents are kept in a SQLite database inside the data directory."},
]


@pytest.fixture
async def client(shared_rag: RAG, collection: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(shared_rag.settings, shared_rag) as c:
        r = await c.post("/v1/documents", json={"collection": collection, "documents": DOCS})
        assert r.status_code == 201, r.text
        yield c


async def test_stream_sends_sources_then_tokens_then_done(client: httpx.AsyncClient, collection: str) -> None:
    question = {"query": "Which port does the server listen on?", "collection": collection}
    r = await client.post("/v1/query", json={**question, "stream": True}, headers={"X-Request-ID": "stream-1"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done"
    assert set(names[1:-1]) == {"token"} and len(names) > 3

    sources = events[0][1]
    assert sources["sources"][0]["document_id"] == "port.md"
    assert sources["request_id"] == "stream-1"
    assert {"embed", "retrieve"} <= set(sources["timings_ms"])

    done = events[-1][1]
    streamed = "".join(data["text"] for name, data in events if name == "token")
    assert streamed == done["answer"]
    assert "8000" in done["answer"]
    assert [c["document_id"] for c in done["citations"]] == ["port.md"]
    assert {"embed", "retrieve", "generate", "total"} <= set(done["timings_ms"])
    assert done["usage"]["completion_tokens"] > 0
    assert done["request_id"] == "stream-1"
    assert len(done["trace_id"]) == 32

    # The streamed answer is the one a plain request gets.
    whole = (await client.post("/v1/query", json=question)).json()
    assert whole["answer"] == done["answer"]
    assert whole["citations"] == done["citations"]


async def test_bad_streamed_request_fails_with_a_status_not_an_event(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/query", json={"query": "x", "collection": "bad name!", "stream": True})
    assert r.status_code == 422
    assert "collection" in r.json()["error"]["message"]
    # Checks the core makes (not the schema) still come before the first event.
    r = await client.post("/v1/query", json={"query": "word " * 1000, "stream": True})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request"
    r = await client.post("/v1/query", json={"query": "x", "stream": True, "filters": {"k": [[1]]}})
    assert r.status_code == 422
    assert "filters" in r.json()["error"]["message"]


class BreaksAfter:
    """A provider whose stream fails after `tokens` pieces."""

    name = "breaking"
    model = "breaking-1"

    def __init__(self, tokens: int, error: Exception) -> None:
        self.tokens = tokens
        self.error = error

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Generation:
        raise self.error

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> AsyncIterator[StreamItem]:
        for i in range(self.tokens):
            yield TokenDelta(f"word{i} ")
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DependencyError("upstream model unavailable"), ("dependency_unavailable", True)),
        (RuntimeError("boom"), ("internal_error", False)),
    ],
)
async def test_failure_mid_stream_is_a_typed_error_event(
    shared_rag: RAG, client: httpx.AsyncClient, collection: str, error: Exception, expected: tuple[str, bool]
) -> None:
    original = shared_rag.generator
    shared_rag.generator = BreaksAfter(2, error)
    try:
        r = await client.post(
            "/v1/query",
            json={"query": "Which port?", "collection": collection, "stream": True},
            headers={"X-Request-ID": "broken-1"},
        )
    finally:
        shared_rag.generator = original
    assert r.status_code == 200  # the status line was sent before the failure
    events = parse_sse(r.text)
    assert [name for name, _ in events] == ["sources", "token", "token", "error"]
    error_body: dict[str, Any] = events[-1][1]["error"]
    assert (error_body["type"], error_body["retryable"]) == expected
    assert error_body["request_id"] == "broken-1"
    assert "boom" not in error_body["message"]  # internals stay in the log
