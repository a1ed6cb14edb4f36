"""Query-side retrieval: embed the query when the mode needs it, then ask the store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from ragserve.embed.base import Embedder
from ragserve.errors import DependencyError, InvalidInputError
from ragserve.observability.tracing import stage_span
from ragserve.resilience.breaker import CircuitBreaker
from ragserve.store.base import VectorStore
from ragserve.types import SEARCH_MODES, Filters, FusionParams, Scope, ScoredChunk, SearchMode, StoreQuery

log = logging.getLogger(__name__)

MAX_TOP_K = 100
MAX_FILTER_VALUES = 100


@dataclass(slots=True)
class Retrieval:
    chunks: list[ScoredChunk]
    mode: SearchMode  # the mode that ran: "keyword" when the embedder was down
    timings_ms: dict[str, float] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)
    cached: bool = False


def validate_filters(filters: object) -> Filters | None:
    """Metadata equality (`{"k": v}`) or membership (`{"k": [v1, v2]}`), scalar values only."""
    if filters is None:
        return None
    if not isinstance(filters, dict):
        raise InvalidInputError("filters must be an object mapping metadata keys to values", field="filters")
    clean: Filters = {}
    for key, value in filters.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError("filter keys must be non-empty strings", field="filters")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InvalidInputError(f"filter {key!r} has an empty list of values", field="filters")
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidInputError(f"filter {key!r} has more than {MAX_FILTER_VALUES} values", field="filters")
        for v in values:
            if not isinstance(v, str | int | float | bool):
                raise InvalidInputError(
                    f"filter {key!r}: values must be strings, numbers or booleans, got {type(v).__name__}",
                    field="filters",
                )
        clean[key] = value
    return clean


class HybridRetriever:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        fusion: FusionParams,
        max_query_chars: int,
        *,
        embed_breaker: CircuitBreaker | None = None,
        store_breaker: CircuitBreaker | None = None,
    ) -> None:
        self._embedder = embedder
        self._embed_breaker = embed_breaker if embed_breaker is not None else CircuitBreaker("embedder")
        self._store_breaker = store_breaker if store_breaker is not None else CircuitBreaker("vector_store")
        self._store = store
        self._fusion = fusion
        self._max_query_chars = max_query_chars

    async def retrieve(
        self,
        text: str,
        scope: Scope,
        *,
        k: int,
        mode: SearchMode,
        filters: Filters | None = None,
        mmr_lambda: float | None = None,
        candidates: int | None = None,
    ) -> Retrieval:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("query must be a non-empty string", field="query")
        if len(text) > self._max_query_chars:
            raise InvalidInputError(
                f"query is {len(text)} characters; the limit is {self._max_query_chars}", field="query"
            )
        if mode not in SEARCH_MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}", field="mode")
        if not 1 <= k <= MAX_TOP_K:
            raise InvalidInputError(f"top_k must be between 1 and {MAX_TOP_K}, got {k}", field="top_k")
        timings: dict[str, float] = {}
        degraded: list[str] = []
        vector = None
        if mode != "keyword":
            started = time.perf_counter()
            try:
                with stage_span("embed"):
                    async with self._embed_breaker.guard():
                        vector = await self._embedder.embed_query(text)
            except DependencyError as exc:
                # Without a query vector the keyword leg still answers: degrade, do not fail.
                log.warning("embedder unavailable, keyword-only retrieval: %s", exc.message)
                mode = "keyword"
                degraded.append("keyword_only")
            timings["embed"] = (time.perf_counter() - started) * 1000
        fusion = self._fusion
        if candidates is not None:
            fusion = replace(fusion, candidates=candidates)
        query = StoreQuery(
            scope=scope,
            mode=mode,
            k=k,
            vector=vector,
            text=text,
            filters=validate_filters(filters),
            fusion=fusion,
            mmr_lambda=mmr_lambda,
        )
        started = time.perf_counter()
        with stage_span("retrieve", {"rag.mode": mode, "rag.top_k": k}) as span:
            async with self._store_breaker.guard():
                chunks = await self._store.search(query)
            span.set_attribute("rag.results", len(chunks))
        timings["retrieve"] = (time.perf_counter() - started) * 1000
        return Retrieval(chunks, mode, timings, degraded)
