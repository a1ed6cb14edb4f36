"""Search in Qdrant: one leg, or both fused by Qdrant with weighted RRF, filters inside the query.

Hybrid search is one `query_batch_points` round trip: Qdrant fuses the two prefetches
(dense and sparse, `candidates` each) with weighted RRF, and the same batch returns the two
legs' rankings (ids and scores only), which give the per-leg ranks and scores a ScoredChunk
carries; Qdrant's fused result alone does not say where a point came from. `Rrf(k=k + 1)`:
Qdrant scores 1 / (rank / w + k − 1) with 1-based ranks, so with k + 1 and equal weights it
is exactly the embedded store's Σ 1 / (k + rank) (k rounded: Qdrant takes an integer); other
weights differ slightly in shape: 1 / (rank / w + k) here, w / (k + rank) there.
Single-leg searches score 1 / (k + rank) like the embedded store, raw scores in
dense_score / keyword_score. IDF is computed over the tenant's collection only
(`IdfCorpusParams`), as if every collection had its own index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import AsyncQdrantClient
from qdrant_client import models as qm

from ragserve.retrieve.fusion import maximal_marginal_relevance
from ragserve.store.qdrant import schema
from ragserve.store.qdrant.sparse import query_weights
from ragserve.types import ScoredChunk, StoreQuery


async def search_chunks(
    client: AsyncQdrantClient, collection: str, query: StoreQuery, vector: npt.NDArray[np.float32] | None
) -> list[ScoredChunk]:
    """Top `query.k` chunks; `vector` is the query vector, checked, when the mode has a dense leg."""
    indices, values = query_weights(query.text or "") if query.mode != "dense" else ([], [])
    legs: dict[str, dict[str, Any]] = {}  # the arguments of each leg's query
    flt = schema.search_filter(query.scope, query.filters)
    n = max(query.fusion.candidates, query.k)
    if vector is not None:
        legs["dense"] = {"query": vector.tolist(), "using": schema.DENSE, "filter": flt, "limit": n}
    if indices:
        legs["keyword"] = {
            "query": qm.SparseVector(indices=indices, values=values),
            "using": schema.SPARSE,
            "filter": flt,
            "limit": n,
            "params": qm.SearchParams(idf=qm.IdfCorpusParams(corpus=schema.scope_filter(query.scope))),
        }
    if not legs:
        return []
    mmr = query.mmr_lambda is not None and vector is not None
    shown: dict[str, Any] = {
        "limit": max(query.k * 4, 20) if mmr else query.k,
        "with_payload": True,
        "with_vector": [schema.DENSE] if mmr else False,
    }
    fusion = query.fusion
    weights = {"dense": fusion.dense_weight, "keyword": fusion.keyword_weight}
    # As in the embedded store, a weight applies only when both legs run; 0 switches a leg off.
    fused_legs = [leg for leg in legs if weights[leg] > 0] if len(legs) == 2 else list(legs)
    if len(fused_legs) == 2:
        top = qm.QueryRequest(
            prefetch=[qm.Prefetch(**legs[leg]) for leg in fused_legs],
            query=qm.RrfQuery(rrf=qm.Rrf(k=round(fusion.k) + 1, weights=[weights[leg] for leg in fused_legs])),
            **shown,
        )
        answers = await client.query_batch_points(
            collection, [top, *(qm.QueryRequest(**args) for args in legs.values())]
        )
        hits = answers[0].points
        rankings = dict(zip(legs, (a.points for a in answers[1:]), strict=True))
    else:
        leg = fused_legs[0]
        answer = await client.query_batch_points(collection, [qm.QueryRequest(**(legs[leg] | shown))])
        rankings = {leg: answer[0].points}
        hits = [p.model_copy(update={"score": 1.0 / (fusion.k + r)}) for r, p in enumerate(rankings[leg], 1)]
    if mmr and vector is not None and len(hits) > query.k:
        vectors = np.stack([_dense_of(p) for p in hits])
        hits = [hits[i] for i in maximal_marginal_relevance(vector, vectors, query.k, query.mmr_lambda or 0.0)]
    ranks = {leg: {p.id: (rank, p.score) for rank, p in enumerate(points, start=1)} for leg, points in rankings.items()}
    return [_scored(p, ranks) for p in hits[: query.k]]


def _dense_of(point: qm.ScoredPoint) -> npt.NDArray[np.float32]:
    vectors = point.vector
    assert isinstance(vectors, dict), "the dense vector was requested by name"
    return np.asarray(vectors[schema.DENSE], dtype=np.float32)


def _scored(point: qm.ScoredPoint, ranks: dict[str, dict[qm.ExtendedPointId, tuple[int, float]]]) -> ScoredChunk:
    payload = point.payload or {}
    dense, keyword = ranks.get("dense", {}).get(point.id), ranks.get("keyword", {}).get(point.id)
    return ScoredChunk(
        chunk_id=int(point.id),
        document_id=payload["document_id"],
        text=payload["text"],
        score=point.score,
        title=payload.get("title"),
        source=payload.get("source"),
        headings=tuple(payload.get("headings") or ()),
        page=payload.get("page"),
        metadata=payload.get("metadata") or {},
        dense_rank=dense[0] if dense else None,
        keyword_rank=keyword[0] if keyword else None,
        dense_score=dense[1] if dense else None,
        keyword_score=keyword[1] if keyword else None,
    )
