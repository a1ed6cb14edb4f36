"""The answer, retrieval and embedding caches in one process: hits, misses, and never a stale answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi import serve
from sse_reader import parse_sse

from ragserve.rag import RAG
from ragserve.types import DocumentInput, Scope

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORT_DOC = {
    "id": "port.md",
    "text": "The server listens on port 8000 by default. To change the port, set RAGSERVE_PORT.",
}
OTHER_DOC = {"id": "otters.md", "text": "Sea otters hold hands while they sleep so that they do not drift apart."}
QUESTION = "Which port does the server listen on?"


@pytest.fixture
async def client(shared_rag: RAG, collection: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(shared_rag.settings, shared_rag) as c:
        r = await c.post("/v1/documents", json={"collection": collection, "documents": [PORT_DOC, OTHER_DOC]})
        assert r.status_code == 201, r.text
        yield c


async def ask(client: httpx.AsyncClient, collection: str, question: str = QUESTION, **extra: object) -> httpx.Response:
    r = await client.post("/v1/query", json={"query": question, "collection": collection, **extra})
    assert r.status_code == 200, r.text
    return r


async def test_the_same_question_is_served_from_the_cache(client: httpx.AsyncClient, collection: str) -> None:
    first = await ask(client, collection)
    assert (first.headers["x-cache"], first.json()["cached"]) == ("miss", "none")
    again = await ask(client, collection, "  which PORT does the server listen on  ")  # case, spaces, "?"
    assert (again.headers["x-cache"], again.json()["cached"]) == ("hit-exact", "exact")
    assert again.json()["answer"] == first.json()["answer"]
    assert again.json()["citations"] == first.json()["citations"]
    assert set(again.json()["timings_ms"]) == {"cache", "total"}
    bypass = await ask(client, collection, use_cache=False)
    assert (bypass.headers["x-cache"], bypass.json()["cached"]) == ("miss", "none")


async def test_a_parameter_that_changes_the_result_is_part_of_the_key(
    client: httpx.AsyncClient, collection: str
) -> None:
    await ask(client, collection)
    for extra in ({"top_k": 1}, {"mode": "keyword"}, {"max_tokens": 20}, {"filters": {"document_id": "port.md"}}):
        assert (await ask(client, collection, **extra)).headers["x-cache"] == "miss", extra


async def test_updating_a_cited_document_is_never_served_stale(client: httpx.AsyncClient, collection: str) -> None:
    await ask(client, collection)
    assert (await ask(client, collection)).headers["x-cache"] == "hit-exact"
    changed = {**PORT_DOC, "text": "The server listens on port 9090 by default. To change the port, set RAGSERVE_PORT."}
    r = await client.post("/v1/documents", json={"collection": collection, "documents": [changed]})
    assert r.json()["results"][0]["status"] == "updated"
    after = await ask(client, collection)
    assert after.headers["x-cache"] == "miss"
    assert "9090" in after.json()["answer"] and "8000" not in after.json()["answer"]
    # Deleting it: the next answer cannot quote it, cached or not.
    await client.delete("/v1/documents/port.md", params={"collection": collection})
    gone = await ask(client, collection)
    assert gone.headers["x-cache"] == "miss"
    assert all(c["document_id"] != "port.md" for c in gone.json()["citations"])


async def test_a_hit_is_checked_against_the_store_even_if_eviction_never_came(shared_rag: RAG, collection: str) -> None:
    """An answer being generated while its document changes must not be served afterwards."""
    scope = shared_rag.scope(collection)
    await shared_rag.add_documents([DocumentInput(PORT_DOC["text"], id="port.md")], scope)
    first = await shared_rag.query(QUESTION, scope)
    assert first.cached == "none"
    assert shared_rag.query_cache is not None
    evict = shared_rag.pipeline.on_written
    shared_rag.pipeline.on_written = None  # the write happens, the eviction is lost
    try:
        await shared_rag.add_documents(
            [DocumentInput("The server listens on port 7070 by default.", id="port.md")], scope
        )
    finally:
        shared_rag.pipeline.on_written = evict
    after = await shared_rag.query(QUESTION, scope)
    assert after.cached == "none"  # the cached entry's chunks are gone from the store: refused
    assert "7070" in after.answer


async def test_tenants_never_share_cache_entries(shared_rag: RAG, collection: str) -> None:
    mine, theirs = Scope("tenant-a", collection), Scope("tenant-b", collection)
    for scope in (mine, theirs):
        await shared_rag.add_documents([DocumentInput(PORT_DOC["text"], id="port.md")], scope)
    assert (await shared_rag.query(QUESTION, mine)).cached == "none"
    assert (await shared_rag.query(QUESTION, mine)).cached == "exact"
    other = await shared_rag.query(QUESTION, theirs)
    assert other.cached == "none"  # same question, same documents, another tenant: computed again
    assert all(c.document_id == "port.md" for c in other.citations)


async def test_searches_are_cached_and_refreshed_by_any_write(client: httpx.AsyncClient, collection: str) -> None:
    body = {"query": "sea otters", "collection": collection}
    first = await client.post("/v1/search", json=body)
    assert first.headers["x-cache"] == "miss"
    assert (await client.post("/v1/search", json=body)).headers["x-cache"] == "hit-exact"
    new = {"id": "more-otters.md", "text": "Sea otters use rocks as tools to open shellfish."}
    await client.post("/v1/documents", json={"collection": collection, "documents": [new]})
    after = await client.post("/v1/search", json=body)
    assert after.headers["x-cache"] == "miss"  # a new document may now rank: the collection's searches were evicted
    assert "more-otters.md" in [r["document_id"] for r in after.json()["results"]]


async def test_a_cached_answer_streams_like_a_fresh_one(client: httpx.AsyncClient, collection: str) -> None:
    fresh = (await ask(client, collection)).json()
    r = await client.post("/v1/query", json={"query": QUESTION, "collection": collection, "stream": True})
    assert r.headers["x-cache"] == "hit-exact"
    events = parse_sse(r.text)
    assert events[0][0] == "sources" and events[-1][0] == "done"
    assert "".join(d["text"] for n, d in events if n == "token") == fresh["answer"]
    assert events[-1][1]["cached"] == "exact"


async def test_query_embeddings_are_cached(shared_rag: RAG, collection: str) -> None:
    scope = shared_rag.scope(collection)
    await shared_rag.add_documents([DocumentInput(PORT_DOC["text"], id="port.md")], scope)
    calls = 0
    inner = shared_rag.embedder.inner  # type: ignore[attr-defined]
    original = inner.embed_query

    async def counting(text: str) -> object:
        nonlocal calls
        calls += 1
        return await original(text)

    inner.embed_query = counting
    try:
        await shared_rag.search("a question asked twice about ports", scope, use_cache=False)
        await shared_rag.search("a question asked twice about ports", scope, use_cache=False)
    finally:
        inner.embed_query = original
    assert calls == 1


async def test_status_counts_cached_entries_and_metrics_count_hits(client: httpx.AsyncClient, collection: str) -> None:
    before = (await client.get("/status")).json()["cache"]
    metrics_before = (await client.get("/metrics")).text
    await ask(client, collection)
    await ask(client, collection)
    after = (await client.get("/status")).json()["cache"]
    assert after["enabled"] is True and after["backend"] == "memory"
    assert after["entries"] > before["entries"]
    metrics_after = (await client.get("/metrics")).text

    def sample(text: str, labels: str) -> float:
        line = next((x for x in text.splitlines() if x.startswith(f"rag_cache_requests_total{{{labels}}}")), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    assert sample(metrics_after, 'layer="l1",result="hit"') > sample(metrics_before, 'layer="l1",result="hit"')


async def test_a_rephrased_question_reuses_the_answer_but_a_negated_one_does_not(
    shared_rag: RAG, collection: str
) -> None:
    scope = shared_rag.scope(collection)
    await shared_rag.add_documents(
        [DocumentInput(PORT_DOC["text"], id="port.md"), DocumentInput(OTHER_DOC["text"], id="otters.md")], scope
    )
    original = await shared_rag.query("Which port does the server listen on?", scope)
    assert original.cached == "none"

    rephrased = await shared_rag.query("Can you tell me which port the server listens on?", scope)
    assert rephrased.cached == "semantic"
    assert rephrased.cache_similarity is not None and rephrased.cache_similarity >= 0.90
    assert rephrased.answer == original.answer

    negated = await shared_rag.query("Which port does the server not listen on?", scope)
    assert negated.cached == "none"
    elsewhere = await shared_rag.query(
        "Can you tell me which port the server listens on?", Scope("tenant-z", collection)
    )
    assert elsewhere.cached == "none"  # another tenant's scope holds no semantic entries of this one


async def test_use_cache_false_neither_reads_nor_fills_any_cache(client: httpx.AsyncClient, collection: str) -> None:
    await ask(client, collection, use_cache=False)
    assert (await ask(client, collection)).headers["x-cache"] == "miss"  # no answer was stored
    r = await client.post("/v1/search", json={"query": "sea otters", "collection": collection, "use_cache": False})
    assert r.headers["x-cache"] == "miss"
    again = await client.post("/v1/search", json={"query": "sea otters", "collection": collection})
    assert again.headers["x-cache"] == "miss"  # nor a search


async def test_warm_up_replays_the_most_asked_questions_into_the_cache(shared_rag: RAG, collection: str) -> None:
    scope = shared_rag.scope(collection)
    await shared_rag.add_documents([DocumentInput(PORT_DOC["text"], id="port.md")], scope)
    assert shared_rag.recent is not None
    await shared_rag.query(QUESTION, scope, use_cache=False)  # counted as asked, cached nowhere
    shared_rag.recent.save()  # as a stopping process does

    settings = shared_rag.settings.model_copy(update={"cache_warmup_queries": 50})
    async with serve(settings, shared_rag) as c:
        assert (await c.get("/health/live")).status_code == 200
        cache = shared_rag.query_cache
        assert cache is not None
        for _ in range(200):  # the warm-up runs in the background; look without filling anything
            found = await cache.lookup(scope, QUESTION, shared_rag._default_params, shared_rag._generator_id)
            if found.answer is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the warm-up never cached the recent question")
        r = await c.post("/v1/query", json={"query": QUESTION, "collection": collection})
        assert r.headers["x-cache"] == "hit-exact"
