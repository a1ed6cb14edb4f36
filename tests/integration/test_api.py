"""The HTTP API end to end: every route, every kind of bad input, request ids, isolation.

One app over the session's RAG, driven in process through httpx's ASGI transport. Each
test writes to a collection of its own, so the tests stay independent of each other.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi import serve

from ragserve.rag import RAG

pytestmark = pytest.mark.asyncio(loop_scope="session")

Client = httpx.AsyncClient
SMALL_LIMIT = 2048
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")

FAQ = {
    "id": "samples/faq.md",
    "title": "FAQ",
    "source": "samples/faq.md",
    "text": "The server listens on port 8000 by default. Set RAGSERVE_PORT to choose another one.",
    "metadata": {"team": "platform", "lang": "en", "year": 2024},
}
STORAGE = {
    "id": "guide/storage.md",
    "title": "Storage",
    "text": "Documents are kept in a SQLite database inside the data directory, next to the indexes.",
    "metadata": {"team": "storage", "lang": "en", "year": 2023},
}
TANTIVY = {
    "id": "notes/tantivy.txt",
    "title": "Tantivy",
    "text": "Tantivy is a full-text search engine library written in Rust, similar to Lucene.",
    "metadata": {"team": "search", "lang": "de", "year": 2024},
}
CORPUS = [FAQ, STORAGE, TANTIVY]


@pytest.fixture(scope="session")
async def client(shared_rag: RAG) -> AsyncIterator[Client]:
    async with serve(shared_rag.settings, shared_rag) as c:
        yield c


@pytest.fixture(scope="session")
async def small_client(shared_rag: RAG) -> AsyncIterator[Client]:
    """The same RAG behind an app that takes bodies of at most SMALL_LIMIT bytes."""
    settings = shared_rag.settings.model_copy(update={"max_request_bytes": SMALL_LIMIT})
    async with serve(settings, shared_rag) as c:
        yield c


@pytest.fixture
async def corpus(client: Client, collection: str) -> str:
    """CORPUS stored in the test's own collection; returns the collection's name."""
    r = await client.post("/v1/documents", json={"collection": collection, "documents": CORPUS})
    assert r.status_code == 201, r.text
    return collection


async def add(client: Client, collection: str | None, *docs: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"documents": list(docs)}
    if collection is not None:
        body["collection"] = collection
    r = await client.post("/v1/documents", json=body)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def search(client: Client, collection: str, query: str, **extra: Any) -> list[dict[str, Any]]:
    r = await client.post("/v1/search", json={"query": query, "collection": collection, **extra})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def statuses(created: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Status and version by document id (results come in no promised order)."""
    return {r["id"]: (r["status"], r["version"]) for r in created["results"]}


def doc_ids(results: list[dict[str, Any]]) -> list[str]:
    return [r["document_id"] for r in results]


def error_of(r: httpx.Response, status: int) -> dict[str, str]:
    """The error body of `r`, checked for the status and the shape every error shares."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    error: dict[str, str] = body["error"]
    assert set(error) == {"type", "message", "request_id"}
    assert error["type"] and error["message"]
    assert error["request_id"] == r.headers["x-request-id"]
    return error


# ------------------------------------------------------------------ documents


async def test_add_documents_reports_created_then_unchanged_then_updated(client: Client, collection: str) -> None:
    first = await add(client, collection, FAQ, STORAGE)
    assert first["collection"] == collection
    assert statuses(first) == {"samples/faq.md": ("created", 1), "guide/storage.md": ("created", 1)}
    assert all(r["chunks"] >= 1 for r in first["results"])
    assert first["chunks"] == sum(r["chunks"] for r in first["results"])
    assert first["request_id"]

    again = await add(client, collection, FAQ, STORAGE)
    assert statuses(again) == {"samples/faq.md": ("unchanged", 1), "guide/storage.md": ("unchanged", 1)}
    assert again["chunks"] == 0

    changed = await add(client, collection, {**FAQ, "text": "The server now listens on port 9000."}, STORAGE)
    assert statuses(changed) == {"samples/faq.md": ("updated", 2), "guide/storage.md": ("unchanged", 1)}
    updated = next(r for r in changed["results"] if r["id"] == "samples/faq.md")
    assert changed["chunks"] == updated["chunks"] >= 1

    r = await client.get("/v1/documents/samples/faq.md", params={"collection": collection})
    assert r.status_code == 200
    assert r.json()["version"] == 2
    assert doc_ids(await search(client, collection, "9000", mode="keyword")) == ["samples/faq.md"]
    assert await search(client, collection, "8000", mode="keyword") == []


async def test_long_document_is_split_into_several_chunks(client: Client, collection: str) -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(200))
    result = await add(client, collection, {"id": "long", "text": text})
    chunks = result["results"][0]["chunks"]
    assert chunks >= 5
    r = await client.get("/v1/documents/long", params={"collection": collection})
    assert r.json()["chunk_count"] == chunks


async def test_document_without_id_gets_a_stable_one(client: Client, collection: str) -> None:
    by_source = await add(client, collection, {"text": "Alpha beta gamma.", "source": "files/greek.txt"})
    assert by_source["results"][0]["id"] == "files/greek.txt"
    anonymous = {"text": "A document nobody named."}
    first = await add(client, collection, anonymous)
    second = await add(client, collection, anonymous)
    assert first["results"][0]["id"] == second["results"][0]["id"]
    assert first["results"][0]["id"].startswith("doc-")
    assert second["results"][0]["status"] == "unchanged"


async def test_repeated_id_in_one_batch_keeps_the_last(client: Client, collection: str) -> None:
    result = await add(client, collection, {"id": "dup", "text": "first zebra"}, {"id": "dup", "text": "last okapi"})
    assert [(r["id"], r["status"]) for r in result["results"]] == [("dup", "created")]
    assert doc_ids(await search(client, collection, "okapi", mode="keyword")) == ["dup"]
    assert await search(client, collection, "zebra", mode="keyword") == []


async def test_get_document_with_slashes_in_its_id(client: Client, corpus: str) -> None:
    r = await client.get("/v1/documents/samples/faq.md", params={"collection": corpus})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == "samples/faq.md"
    assert doc["version"] == 1
    assert doc["title"] == "FAQ"
    assert doc["source"] == "samples/faq.md"
    assert doc["metadata"] == FAQ["metadata"]
    assert doc["chunk_count"] >= 1
    assert len(doc["content_hash"]) == 64
    assert doc["created_at"] <= doc["updated_at"]


async def test_get_unknown_document_is_404(client: Client, corpus: str) -> None:
    r = await client.get("/v1/documents/samples/nope.md", params={"collection": corpus})
    error = error_of(r, 404)
    assert error["type"] == "not_found"
    assert "samples/nope.md" in error["message"]


async def test_list_documents_pages_through_a_collection(client: Client, collection: str) -> None:
    await add(client, collection, *({"id": f"d{i}", "text": f"Document number {i}."} for i in range(5)))

    async def page(**params: Any) -> dict[str, Any]:
        r = await client.get("/v1/documents", params={"collection": collection, **params})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["collection"] == collection
        assert body["total"] == 5
        return body

    everything = await page()
    assert [d["id"] for d in everything["documents"]] == ["d0", "d1", "d2", "d3", "d4"]
    assert (everything["limit"], everything["offset"]) == (50, 0)
    first = await page(limit=2)
    assert [d["id"] for d in first["documents"]] == ["d0", "d1"]
    assert (first["limit"], first["offset"]) == (2, 0)
    middle = await page(limit=2, offset=2)
    assert [d["id"] for d in middle["documents"]] == ["d2", "d3"]
    last = await page(limit=2, offset=4)
    assert [d["id"] for d in last["documents"]] == ["d4"]
    beyond = await page(offset=10)
    assert beyond["documents"] == []


async def test_list_of_an_unknown_collection_is_empty(client: Client, collection: str) -> None:
    r = await client.get("/v1/documents", params={"collection": collection})
    assert r.status_code == 200
    assert r.json() == {"collection": collection, "documents": [], "total": 0, "limit": 50, "offset": 0}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "ten"}])
async def test_list_documents_rejects_bad_paging(client: Client, params: dict[str, Any]) -> None:
    error = error_of(await client.get("/v1/documents", params=params), 422)
    assert next(iter(params)) in error["message"]


async def test_default_collection_is_used_when_none_is_named(client: Client, collection: str) -> None:
    doc_id = f"default-{collection}"
    result = await add(client, None, {"id": doc_id, "text": "Stored without naming a collection."})
    assert result["collection"] == "default"
    assert (await client.get(f"/v1/documents/{doc_id}")).status_code == 200
    assert (await client.get(f"/v1/documents/{doc_id}", params={"collection": "default"})).status_code == 200
    assert (await client.get(f"/v1/documents/{doc_id}", params={"collection": collection})).status_code == 404
    listed = (await client.get("/v1/documents", params={"limit": 1000})).json()
    assert listed["collection"] == "default"
    assert doc_id in [d["id"] for d in listed["documents"]]
    assert (await client.delete(f"/v1/documents/{doc_id}")).status_code == 200


async def test_delete_document(client: Client, corpus: str) -> None:
    assert doc_ids(await search(client, corpus, "Tantivy Rust", mode="keyword"))[0] == "notes/tantivy.txt"
    r = await client.delete("/v1/documents/notes/tantivy.txt", params={"collection": corpus})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"id": "notes/tantivy.txt", "deleted": True, "request_id": r.headers["x-request-id"]}

    error_of(await client.get("/v1/documents/notes/tantivy.txt", params={"collection": corpus}), 404)
    error = error_of(await client.delete("/v1/documents/notes/tantivy.txt", params={"collection": corpus}), 404)
    assert error["type"] == "not_found"
    for mode in ("keyword", "dense", "hybrid"):
        assert "notes/tantivy.txt" not in doc_ids(await search(client, corpus, "Tantivy Rust library", mode=mode))
    listed = (await client.get("/v1/documents", params={"collection": corpus})).json()
    assert listed["total"] == 2
    assert "notes/tantivy.txt" not in [d["id"] for d in listed["documents"]]


# --------------------------------------------------------------------- search


async def test_search_modes(client: Client, corpus: str) -> None:
    for mode in ("dense", "keyword", "hybrid"):
        r = await client.post(
            "/v1/search", json={"query": "Tantivy search library in Rust", "collection": corpus, "mode": mode}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == mode
        assert body["request_id"] == r.headers["x-request-id"]
        assert body["timings_ms"]["retrieve"] >= 0
        top = body["results"][0]
        assert top["document_id"] == "notes/tantivy.txt", mode
        assert top["title"] == "Tantivy"
        assert "Rust" in top["text"]
        assert top["metadata"] == TANTIVY["metadata"]
        assert (top["dense_rank"] is not None) == (mode != "keyword")
        assert (top["keyword_rank"] is not None) == (mode != "dense")
        scores = [r["score"] for r in body["results"]]
        assert scores == sorted(scores, reverse=True)
    assert (
        "embed"
        not in (
            await client.post("/v1/search", json={"query": "Rust", "collection": corpus, "mode": "keyword"})
        ).json()["timings_ms"]
    )


async def test_search_mode_defaults_to_hybrid(client: Client, corpus: str) -> None:
    r = await client.post("/v1/search", json={"query": "SQLite database", "collection": corpus})
    assert r.json()["mode"] == "hybrid"
    assert r.json()["results"][0]["document_id"] == "guide/storage.md"


async def test_search_dense_finds_paraphrases(client: Client, corpus: str) -> None:
    results = await search(client, corpus, "where is my data persisted on disk", mode="dense", top_k=1)
    assert doc_ids(results) == ["guide/storage.md"]


async def test_search_top_k(client: Client, corpus: str) -> None:
    assert len(await search(client, corpus, "the", mode="dense", top_k=1)) == 1
    assert len(await search(client, corpus, "the", mode="dense", top_k=2)) == 2
    assert len(await search(client, corpus, "the", mode="dense", top_k=100)) == 3


async def test_search_filters(client: Client, corpus: str) -> None:
    # Every document shares a term with this query, so each mode can find all three.
    query = "server database search engine"

    async def found(mode: str, filters: dict[str, Any]) -> list[str]:
        return sorted(doc_ids(await search(client, corpus, query, mode=mode, filters=filters)))

    for mode in ("dense", "keyword", "hybrid"):
        assert await found(mode, {}) == ["guide/storage.md", "notes/tantivy.txt", "samples/faq.md"], mode
        assert await found(mode, {"lang": "en"}) == ["guide/storage.md", "samples/faq.md"], mode
        assert await found(mode, {"team": "search"}) == ["notes/tantivy.txt"], mode
        assert await found(mode, {"team": ["search", "storage"]}) == ["guide/storage.md", "notes/tantivy.txt"], mode
        # Keys are ANDed, the values of one key ORed.
        assert await found(mode, {"lang": "en", "year": [2024, 1999]}) == ["samples/faq.md"], mode
        assert await found(mode, {"team": "nobody"}) == [], mode
        assert await found(mode, {"team": "search", "lang": "en"}) == [], mode
        # JSON types matter: the string "2024" is not the number 2024.
        assert await found(mode, {"year": "2024"}) == [], mode
        assert await found(mode, {"document_id": "guide/storage.md"}) == ["guide/storage.md"], mode
        assert await found(mode, {"source": "samples/faq.md"}) == ["samples/faq.md"], mode


async def test_search_of_an_unknown_collection_is_empty(client: Client, collection: str) -> None:
    for mode in ("dense", "keyword", "hybrid"):
        assert await search(client, collection, "anything", mode=mode) == []


async def test_collections_are_isolated(client: Client, corpus: str, collection: str) -> None:
    other = collection + "-b"
    await add(client, other, {"id": "b-only", "text": "Quokkas live on Rottnest Island."})
    for mode in ("dense", "keyword", "hybrid"):
        assert "notes/tantivy.txt" not in doc_ids(await search(client, other, "Tantivy library in Rust", mode=mode))
        assert "b-only" not in doc_ids(await search(client, corpus, "Quokkas on Rottnest Island", mode=mode))
    # Dense search ranks whatever the collection holds, so B's one document is all it can find.
    assert doc_ids(await search(client, other, "Tantivy library in Rust", mode="dense")) == ["b-only"]
    assert doc_ids(await search(client, other, "Quokkas", mode="keyword")) == ["b-only"]
    assert (await client.get("/v1/documents/b-only", params={"collection": corpus})).status_code == 404
    assert (await client.get("/v1/documents/notes/tantivy.txt", params={"collection": other})).status_code == 404
    assert (await client.delete("/v1/documents/notes/tantivy.txt", params={"collection": other})).status_code == 404
    assert (await client.get("/v1/documents/notes/tantivy.txt", params={"collection": corpus})).status_code == 200
    answer = (await client.post("/v1/query", json={"query": "Where do quokkas live?", "collection": corpus})).json()
    assert "b-only" not in [c["document_id"] for c in answer["citations"]]
    assert "Rottnest" not in answer["answer"]


# ---------------------------------------------------------------------- query


async def test_query_answers_with_citations(client: Client, corpus: str) -> None:
    r = await client.post(
        "/v1/query", json={"query": "Which port does the server listen on by default?", "collection": corpus}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    for field in (
        "answer",
        "answered",
        "citations",
        "sources",
        "provider",
        "model",
        "cached",
        "degraded",
        "usage",
        "timings_ms",
        "request_id",
    ):
        assert field in body
    assert body["answered"] is True
    assert "8000" in body["answer"]
    assert body["provider"] == "extractive"
    assert body["model"]
    assert body["cached"] == "none"
    assert body["degraded"] == []
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert body["timings_ms"]["total"] >= body["timings_ms"]["generate"] >= 0
    assert body["request_id"] == r.headers["x-request-id"]

    markers = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    citations = body["citations"]
    assert markers
    assert markers == {c["number"] for c in citations}
    for c in citations:
        assert set(c) == {"number", "document_id", "chunk_id", "title", "source", "score", "snippet"}
        source = body["sources"][c["number"] - 1]
        assert (c["document_id"], c["chunk_id"]) == (source["document_id"], source["chunk_id"])
        assert c["snippet"] and c["snippet"] in " ".join(source["text"].split())
    assert [c["document_id"] for c in citations] == ["samples/faq.md"]
    assert citations[0]["title"] == "FAQ"
    assert citations[0]["source"] == "samples/faq.md"
    assert "8000" in citations[0]["snippet"]


async def test_query_body_sent_the_way_curl_d_sends_it(client: Client, corpus: str) -> None:
    # `curl -d '{...}'` labels JSON as a form; the documented one-liner must still work.
    body = json.dumps({"query": "How tall is the Eiffel Tower?", "collection": corpus})
    r = await client.post("/v1/query", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert r.json()["sources"]
    r = await client.post("/v1/search", content="query=tower", headers={"content-type": "text/plain"})
    assert error_of(r, 422)["type"] == "validation_error"


async def test_query_top_k_and_filters_bound_the_sources(client: Client, corpus: str) -> None:
    question = "Which port does the server listen on by default?"
    r = await client.post("/v1/query", json={"query": question, "collection": corpus, "top_k": 1, "mode": "dense"})
    assert doc_ids(r.json()["sources"]) == ["samples/faq.md"]
    r = await client.post("/v1/query", json={"query": question, "collection": corpus, "filters": {"team": "storage"}})
    body = r.json()
    assert doc_ids(body["sources"]) == ["guide/storage.md"]
    assert body["answered"] is False
    assert body["citations"] == []


async def test_query_without_an_answer_says_so(client: Client, corpus: str) -> None:
    r = await client.post("/v1/query", json={"query": "What is the capital city of Mongolia?", "collection": corpus})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answered"] is False
    assert body["citations"] == []
    assert not re.search(r"\[\d+\]", body["answer"])
    assert body["answer"]


async def test_query_on_an_empty_collection(client: Client, collection: str) -> None:
    r = await client.post("/v1/query", json={"query": "Which port?", "collection": collection})
    assert r.status_code == 200, r.text
    assert r.json()["answered"] is False
    assert r.json()["sources"] == []


# --------------------------------------------------------------- health, page


async def test_health_live(client: Client) -> None:
    r = await client.get("/health/live")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_web_page_is_served(client: Client) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<title>ragserve</title>" in r.text


# ---------------------------------------------------------------- bad input

JSON = {"content-type": "application/json"}
BAD_INPUT: list[tuple[str, str, str, dict[str, Any], int, list[str]]] = [
    # (id, method, path, request kwargs, status, words the message must contain)
    ("malformed-json-query", "POST", "/v1/query", {"content": b'{"query": ', "headers": JSON}, 422, ["JSON"]),
    ("malformed-json-docs", "POST", "/v1/documents", {"content": b"{documents: []}", "headers": JSON}, 422, ["JSON"]),
    (
        "not-json-content-type",
        "POST",
        "/v1/search",
        {"content": b"query=x", "headers": {"content-type": "text/plain"}},
        422,
        [],
    ),
    ("no-body", "POST", "/v1/search", {}, 422, ["body"]),
    ("body-not-object", "POST", "/v1/search", {"json": ["query"]}, 422, []),
    ("missing-query", "POST", "/v1/query", {"json": {"top_k": 3}}, 422, ["query: Field required"]),
    (
        "missing-text",
        "POST",
        "/v1/documents",
        {"json": {"documents": [{"title": "x"}]}},
        422,
        ["documents.0.text", "required"],
    ),
    ("missing-documents", "POST", "/v1/documents", {"json": {"collection": "c"}}, 422, ["documents", "required"]),
    ("unknown-field-query", "POST", "/v1/query", {"json": {"query": "x", "stremaing": True}}, 422, ["stremaing"]),
    (
        "unknown-field-doc",
        "POST",
        "/v1/documents",
        {"json": {"documents": [{"text": "x", "body": "y"}]}},
        422,
        ["documents.0.body", "not permitted"],
    ),
    ("query-not-string", "POST", "/v1/search", {"json": {"query": 42}}, 422, ["query:"]),
    ("top-k-not-int", "POST", "/v1/search", {"json": {"query": "x", "top_k": "many"}}, 422, ["top_k"]),
    ("top-k-float", "POST", "/v1/search", {"json": {"query": "x", "top_k": 2.5}}, 422, ["top_k"]),
    ("documents-not-list", "POST", "/v1/documents", {"json": {"documents": "abc"}}, 422, ["documents"]),
    (
        "metadata-not-object",
        "POST",
        "/v1/documents",
        {"json": {"documents": [{"text": "x", "metadata": [1]}]}},
        422,
        ["metadata"],
    ),
    ("filters-not-object", "POST", "/v1/search", {"json": {"query": "x", "filters": ["a"]}}, 422, ["filters"]),
    ("empty-query", "POST", "/v1/query", {"json": {"query": ""}}, 422, ["query:"]),
    ("blank-query", "POST", "/v1/query", {"json": {"query": "   \n "}}, 422, ["query", "blank"]),
    ("too-long-query", "POST", "/v1/search", {"json": {"query": "word " * 1000}}, 400, ["query", "4000"]),
    ("top-k-0", "POST", "/v1/search", {"json": {"query": "x", "top_k": 0}}, 422, ["top_k"]),
    ("top-k-101", "POST", "/v1/query", {"json": {"query": "x", "top_k": 101}}, 422, ["top_k"]),
    ("max-tokens-0", "POST", "/v1/query", {"json": {"query": "x", "max_tokens": 0}}, 422, ["max_tokens"]),
    ("invalid-mode", "POST", "/v1/search", {"json": {"query": "x", "mode": "fuzzy"}}, 422, ["mode"]),
    (
        "nested-filter",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "filters": {"lang": {"$eq": "en"}}}},
        422,
        ["filters"],
    ),
    (
        "nested-filter-list",
        "POST",
        "/v1/query",
        {"json": {"query": "x", "filters": {"lang": [["en"]]}}},
        422,
        ["filters"],
    ),
    ("null-filter", "POST", "/v1/search", {"json": {"query": "x", "filters": {"lang": None}}}, 422, ["filters"]),
    (
        "empty-filter-list",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "filters": {"lang": []}}},
        422,
        ["filters.lang"],
    ),
    (
        "collection-dotdot-search",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "collection": "../x"}},
        422,
        ["collection", "'../x'"],
    ),
    (
        "collection-space-query",
        "POST",
        "/v1/query",
        {"json": {"query": "x", "collection": "a b"}},
        422,
        ["collection", "'a b'"],
    ),
    (
        "collection-dotdot-add",
        "POST",
        "/v1/documents",
        {"json": {"collection": "../x", "documents": [{"text": "x"}]}},
        422,
        ["collection", "'../x'"],
    ),
    ("collection-list", "GET", "/v1/documents", {"params": {"collection": "a b"}}, 422, ["collection", "'a b'"]),
    ("collection-get", "GET", "/v1/documents/x", {"params": {"collection": "../x"}}, 422, ["collection"]),
    ("collection-delete", "DELETE", "/v1/documents/x", {"params": {"collection": "a/b"}}, 422, ["collection"]),
    (
        "collection-too-long",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "collection": "c" * 129}},
        422,
        ["collection"],
    ),
    ("empty-documents", "POST", "/v1/documents", {"json": {"documents": []}}, 422, ["documents"]),
    ("empty-text", "POST", "/v1/documents", {"json": {"documents": [{"text": ""}]}}, 422, ["documents.0.text"]),
    (
        "blank-text",
        "POST",
        "/v1/documents",
        {"json": {"documents": [{"text": " \n\t "}]}},
        422,
        ["documents.0.text", "blank"],
    ),
    (
        "blank-id",
        "POST",
        "/v1/documents",
        {"json": {"documents": [{"text": "x", "id": "  "}]}},
        422,
        ["documents.0.id", "blank"],
    ),
    (
        "too-many-documents",
        "POST",
        "/v1/documents",
        {"json": {"documents": [{"text": "x"}] * 1001}},
        422,
        ["documents", "1000"],
    ),
    ("unknown-route", "GET", "/v1/nothing-here", {}, 404, []),
    ("unknown-root-route", "POST", "/admin", {"json": {}}, 404, []),
    ("get-query", "GET", "/v1/query", {}, 405, []),
    ("put-document", "PUT", "/v1/documents/x", {"json": {}}, 405, []),
    ("delete-search", "DELETE", "/v1/search", {}, 405, []),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"), [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input_is_a_4xx_json_error(
    client: Client, method: str, path: str, kwargs: dict[str, Any], status: int, words: list[str]
) -> None:
    error = error_of(await client.request(method, path, **kwargs), status)
    for word in words:
        assert word in error["message"], error
    expected_type = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 422: "validation_error"}
    assert error["type"] == expected_type[status]


async def test_failed_batch_stores_nothing(client: Client, collection: str) -> None:
    await add(client, collection, {"id": "keep", "text": "The original wombat text."})
    before = (await client.get("/v1/documents/keep", params={"collection": collection})).json()
    batches = [
        ([{"id": "keep", "text": "A replacement capybara text."}, {"id": "bad", "text": "   "}], 422),
        ([{"id": "keep", "text": "A replacement capybara text."}, {"id": "bad", "text": ""}], 422),
        ([{"id": "keep", "text": "A replacement capybara text."}, {"id": "bad", "text": "x", "extra": 1}], 422),
        ([{"id": "keep", "text": "A replacement capybara text."}, {"id": "", "text": "x"}], 422),
    ]
    for documents, status in batches:
        r = await client.post("/v1/documents", json={"collection": collection, "documents": documents})
        error_of(r, status)
        assert (await client.get("/v1/documents/keep", params={"collection": collection})).json() == before
        error_of(await client.get("/v1/documents/bad", params={"collection": collection}), 404)
        listed = (await client.get("/v1/documents", params={"collection": collection})).json()
        assert [d["id"] for d in listed["documents"]] == ["keep"]
        assert await search(client, collection, "capybara", mode="keyword") == []
        assert doc_ids(await search(client, collection, "wombat", mode="keyword")) == ["keep"]


async def test_body_over_the_limit_is_413_by_content_length(small_client: Client, collection: str) -> None:
    big = {"collection": collection, "documents": [{"id": "big", "text": "word " * 1000}]}
    r = await small_client.post("/v1/documents", json=big, headers={"X-Request-ID": "too-big-1"})
    error = error_of(r, 413)
    assert error["type"] == "payload_too_large"
    assert str(SMALL_LIMIT) in error["message"]
    assert error["request_id"] == "too-big-1"
    error_of(await small_client.get("/v1/documents/big", params={"collection": collection}), 404)
    # Under the limit the same app works.
    small = {"collection": collection, "documents": [{"id": "small", "text": "word " * 100}]}
    assert (await small_client.post("/v1/documents", json=small)).status_code == 201


async def test_streamed_body_over_the_limit_is_413(small_client: Client, collection: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"collection": "' + collection.encode() + b'", "documents": [{"id": "streamed", "text": "'
        for _ in range(10):
            yield b"word " * 100
        yield b'"}]}'

    r = await small_client.post("/v1/documents", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    error = error_of(r, 413)
    assert error["type"] == "payload_too_large"
    error_of(await small_client.get("/v1/documents/streamed", params={"collection": collection}), 404)


async def test_streamed_body_under_the_limit_is_accepted(small_client: Client, collection: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"collection": "' + collection.encode() + b'", '
        yield b'"documents": [{"id": "streamed", "text": "a short streamed text"}]}'

    r = await small_client.post("/v1/documents", content=chunks(), headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["results"][0]["status"] == "created"


# ---------------------------------------------------------------- request ids


async def test_sane_request_id_is_echoed(client: Client, collection: str) -> None:
    given = "req-123.abc:XYZ_9"
    r = await client.post("/v1/search", json={"query": "x", "collection": collection}, headers={"X-Request-ID": given})
    assert r.headers["x-request-id"] == given
    assert r.json()["request_id"] == given
    r = await client.get("/v1/documents/missing", params={"collection": collection}, headers={"X-Request-ID": given})
    assert error_of(r, 404)["request_id"] == given
    r = await client.post("/v1/query", json={"query": ""}, headers={"X-Request-ID": given})
    assert error_of(r, 422)["request_id"] == given


@pytest.mark.parametrize("given", ["x" * 129, "has space", "semi;colon", "new\tline", "é-accent", ""])
async def test_insane_request_id_is_replaced(client: Client, given: str) -> None:
    r = await client.get("/v1/nothing-here", headers={"X-Request-ID": given.encode("utf-8")})
    error = error_of(r, 404)
    assert error["request_id"] != given
    assert GENERATED_ID.match(error["request_id"])


async def test_request_id_is_generated_when_absent(client: Client) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")
    assert GENERATED_ID.match(first.headers["x-request-id"])
    assert GENERATED_ID.match(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
