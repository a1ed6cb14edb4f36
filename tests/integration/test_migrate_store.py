"""`ragserve migrate-store --from embedded --to qdrant` copies everything and answers the same searches.

The embedded store is filled through the protocol, the command runs as a user would run it
(environment settings, the CLI's entry point), and the Qdrant store opened afterwards on the
same local path must hold every tenant's collections, documents (with versions, hashes and
timestamps) and vectors: dense search, which depends on nothing but the copied vectors, gives
the very same top results as the source.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from store_corpus import CORPUS, DIM, QUERIES, corpus_writes, embed

from ragserve.cli import main
from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.store.qdrant import QdrantVectorStore, open_client
from ragserve.types import Scope, SearchMode, StoreQuery

MODEL = "hashed-bow"


def migrate_args(data_dir: Path) -> list[str]:
    return ["--data-dir", str(data_dir), "migrate-store", "--from", "embedded", "--to", "qdrant"]


KB, OTHER, EMPTY = Scope("acme", "kb"), Scope("globex", "kb"), Scope("acme", "empty")


async def test_migrate_store_copies_every_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, qdrant_dir = tmp_path / "data", tmp_path / "qdrant"
    source = EmbeddedVectorStore(data_dir, dimension=DIM, model_name=MODEL)
    await source.upsert(KB, corpus_writes())
    changed = {"bread": [*CORPUS["bread"], "Rye bread is dense and sour."]}
    await source.upsert(KB, corpus_writes(changed))  # version 2 of one document
    await source.upsert(OTHER, corpus_writes({k: CORPUS[k] for k in ("mars", "moon", "comet")}))
    await source.upsert(EMPTY, corpus_writes({"gone": ["soon deleted"]}))
    await source.delete(EMPTY, "gone")

    monkeypatch.setenv("RAGSERVE_QDRANT_URL", str(qdrant_dir))
    monkeypatch.setenv("RAGSERVE_QDRANT_COLLECTION_PREFIX", "test")
    assert await asyncio.to_thread(main, migrate_args(data_dir)) == 0

    target = QdrantVectorStore(open_client(str(qdrant_dir)), dimension=DIM, model_name=MODEL, prefix="test")
    try:
        assert await target.totals() == await source.totals()
        for tenant in ("acme", "globex"):
            assert await target.list_collections(tenant) == await source.list_collections(tenant)
        for scope in (KB, OTHER, EMPTY):
            assert await target.stats(scope) == await source.stats(scope)
            assert await target.list_documents(scope, limit=100) == await source.list_documents(scope, limit=100)
        bread = await target.get_document(KB, "bread")
        assert bread is not None and bread.version == 2
        for question in QUERIES:
            for mode in ("dense", "keyword", "hybrid"):
                before, after = await _top(source, KB, mode, question), await _top(target, KB, mode, question)
                if mode == "dense":
                    assert after == before, question
                else:  # BM25 differs by design between the stores: see test_store_congruence
                    assert len(set(after) & set(before)) >= 2, (mode, question)

        # Running it again replaces what the first run copied; nothing doubles.
        await target.aclose()
        assert await asyncio.to_thread(main, migrate_args(data_dir)) == 0
        target = QdrantVectorStore(open_client(str(qdrant_dir)), dimension=DIM, model_name=MODEL, prefix="test")
        assert await target.totals() == await source.totals()
    finally:
        await target.aclose()
        await source.aclose()


async def test_migrate_store_needs_a_qdrant_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGSERVE_QDRANT_URL", raising=False)
    assert await asyncio.to_thread(main, migrate_args(tmp_path)) == 2


async def _top(
    store: EmbeddedVectorStore | QdrantVectorStore, scope: Scope, mode: SearchMode, question: str
) -> list[tuple[str, str]]:
    vector = embed(question) if mode != "keyword" else None
    text = question if mode != "dense" else None
    return [(h.document_id, h.text) for h in await store.search(StoreQuery(scope, mode, 3, vector=vector, text=text))]
