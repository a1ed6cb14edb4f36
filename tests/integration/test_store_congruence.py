"""The embedded and the Qdrant store, fed the same corpus, return the same top results.

Dense search is exact on both sides at this size (hnswlib's graph over 40 chunks finds the
true neighbours, Qdrant's local mode is brute force), so the top 3 chunks must be equal as sets.
Keyword search differs by design: Tantivy uses the Snowball stemmer and its stopword list,
Qdrant our own `terms()` (a lighter stemmer, a longer stopword list), and the BM25 length
normalisation uses an average frozen at write time. Relevant documents still rank on top,
so we ask for at least 2 of each top 3 in common, the same best document for most queries,
and for hybrid, which mixes both legs, the same 2-of-3 overlap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient
from store_corpus import DIM, QUERIES, corpus_writes, embed

from ragserve.store.base import VectorStore
from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.store.qdrant import QdrantVectorStore
from ragserve.types import Scope, SearchMode, StoreQuery

SCOPE = Scope("acme", "kb")


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[VectorStore, VectorStore]]:
    embedded = EmbeddedVectorStore(tmp_path / "embedded", dimension=DIM, model_name="hashed-bow")
    qdrant = QdrantVectorStore(AsyncQdrantClient(location=":memory:"), dimension=DIM, model_name="hashed-bow")
    for store in (embedded, qdrant):
        await store.upsert(SCOPE, corpus_writes())
    yield embedded, qdrant
    for store in (embedded, qdrant):
        await store.aclose()


async def top_chunks(store: VectorStore, mode: SearchMode, question: str, k: int = 3) -> list[tuple[str, str]]:
    """The top chunks as (document id, text): chunk ids differ between the stores."""
    vector = embed(question) if mode != "keyword" else None
    hits = await store.search(StoreQuery(SCOPE, mode, k, vector=vector, text=question if mode != "dense" else None))
    return [(h.document_id, h.text) for h in hits]


async def test_dense_top3_are_the_same(stores: tuple[VectorStore, VectorStore]) -> None:
    embedded, qdrant = stores
    for question in QUERIES:
        expected = await top_chunks(embedded, "dense", question)
        assert set(await top_chunks(qdrant, "dense", question)) == set(expected), question


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
async def test_keyword_and_hybrid_mostly_agree(stores: tuple[VectorStore, VectorStore], mode: SearchMode) -> None:
    embedded, qdrant = stores
    same_best = 0
    for question in QUERIES:
        ours, theirs = await top_chunks(embedded, mode, question), await top_chunks(qdrant, mode, question)
        assert len(set(ours) & set(theirs)) >= min(2, len(ours)), (question, ours, theirs)
        same_best += bool(ours) and bool(theirs) and ours[0] == theirs[0]
    assert same_best >= 0.75 * len(QUERIES)


async def test_counts_agree(stores: tuple[VectorStore, VectorStore]) -> None:
    embedded, qdrant = stores
    assert await embedded.stats(SCOPE) == await qdrant.stats(SCOPE)
    assert [d.id for d in (await embedded.list_documents(SCOPE, limit=100))[0]] == [
        d.id for d in (await qdrant.list_documents(SCOPE, limit=100))[0]
    ]
