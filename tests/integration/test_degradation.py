"""Degradation instead of failure: embedder down, slow generation, maintenance; each flagged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from asgi import serve

from ragserve.errors import EmbedderError
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.rag import MAINTENANCE_CHECK_S, MAINTENANCE_FILE, RAG
from ragserve.resilience.breaker import BreakerState, CircuitBreaker
from ragserve.retrieve.hybrid import HybridRetriever
from ragserve.types import ChatTurn, ScoredChunk

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCS = [{"id": "port.md", "text": "The server listens on port 8000 by default. To change the port, set RAGSERVE_PORT."}]


@pytest.fixture
async def client(shared_rag: RAG, collection: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(shared_rag.settings, shared_rag) as c:
        r = await c.post("/v1/documents", json={"collection": collection, "documents": DOCS})
        assert r.status_code == 201, r.text
        yield c


class FailingEmbedder:
    """Delegates documents, fails every query: the query side of an embedder that went down."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.query_calls = 0

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        result: np.ndarray = await self.inner.embed_documents(texts)
        return result

    async def embed_query(self, text: str) -> np.ndarray:
        self.query_calls += 1
        raise EmbedderError("embedding runtime crashed")

    async def aclose(self) -> None:
        pass


@pytest.fixture
def broken_embedder(shared_rag: RAG) -> Iterator[tuple[FailingEmbedder, CircuitBreaker]]:
    failing = FailingEmbedder(shared_rag.embedder)
    breaker = CircuitBreaker("embedder", failure_threshold=3, reset_timeout_s=60)
    original = shared_rag.retriever
    shared_rag.retriever = HybridRetriever(
        failing,  # type: ignore[arg-type]
        shared_rag.store,
        original._fusion,
        shared_rag.settings.max_query_chars,
        embed_breaker=breaker,
    )
    yield failing, breaker
    shared_rag.retriever = original


async def test_embedder_down_means_keyword_only_answers_flagged(
    client: httpx.AsyncClient, collection: str, broken_embedder: tuple[FailingEmbedder, CircuitBreaker]
) -> None:
    failing, breaker = broken_embedder
    for _ in range(5):
        r = await client.post(
            "/v1/query", json={"query": "Which port does the server listen on?", "collection": collection}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] == ["keyword_only"]
        assert "8000" in body["answer"]
        assert body["sources"][0]["dense_rank"] is None and body["sources"][0]["keyword_rank"] == 1
    # The breaker opened after 3 failures: the embedder was left alone for the other 2 queries.
    assert failing.query_calls == 3
    assert breaker.state is BreakerState.OPEN


class SlowProvider:
    name = "slow"
    model = "slow-1"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Generation:
        await asyncio.sleep(self.delay_s)
        return Generation("too late [1]", [1], True, self.name, self.model)

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> AsyncIterator[StreamItem]:
        await asyncio.sleep(self.delay_s)
        yield TokenDelta("too late")
        yield Generation("too late", [], True, self.name, self.model)


async def test_generation_past_the_deadline_falls_back_to_extractive(
    client: httpx.AsyncClient, shared_rag: RAG, collection: str
) -> None:
    original = shared_rag.generator
    shared_rag.generator = SlowProvider(delay_s=5.0)
    try:
        started = time.perf_counter()
        r = await client.post(
            "/v1/query",
            json={"query": "Which port does the server listen on?", "collection": collection, "timeout_s": 0.5},
        )
        elapsed = time.perf_counter() - started
    finally:
        shared_rag.generator = original
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provider"] == "extractive"
    assert body["degraded"] == ["deadline"]
    assert "8000" in body["answer"]
    assert elapsed < 0.5 * 1.1 + 0.2  # the budget, and a little for the extractive answer


async def test_a_timeout_above_the_cap_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/query", json={"query": "x", "timeout_s": 100000})
    assert r.status_code == 422
    assert "timeout_s" in r.json()["error"]["message"]


async def test_maintenance_switch_is_a_file_every_process_sees(
    client: httpx.AsyncClient, shared_rag: RAG, collection: str
) -> None:
    flag = shared_rag.settings.data_dir / MAINTENANCE_FILE
    flag.touch()
    await asyncio.sleep(MAINTENANCE_CHECK_S + 0.1)  # the file is looked at twice a second
    try:
        r = await client.post("/v1/query", json={"query": "Which port?", "collection": collection})
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "maintenance"
        assert r.headers["retry-after"] == "60"
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and "maintenance" in ready.json()["checks"]
        assert (await client.get("/health/live")).status_code == 200
    finally:
        flag.unlink()
    await asyncio.sleep(MAINTENANCE_CHECK_S + 0.1)
    r = await client.post("/v1/query", json={"query": "Which port?", "collection": collection})
    assert r.status_code == 200
    assert (await client.get("/health/ready")).status_code == 200
