"""The query path's caches: exact answers, semantic answers and retrievals, failing open.

`QueryCache` is what the facade talks to. Every cache call is bounded and fails open: a
cache that is down or slow turns into a miss (counted, and flagged `cache_unavailable`),
never into a failed query. Writes evict what they touched through `invalidate()`.

Nothing stale is ever served, whatever the timing of writes and evictions: chunk ids are
never reused (a changed document gets new ones), so before a cached answer or retrieval is
served, the store confirms that every chunk it was built from is still live. Tag eviction
frees the space early; this check is what makes a hit correct, on every replica, even for
an answer that was being generated while the write happened.

Answers are cached only when they are whole (not degraded) and say something: a cached
"I don't know" would outlive the document that later answers it, because nothing it used
changes when a new document arrives. Retrievals are tagged with their collection as well
as their documents, so any write to a collection refreshes its cached searches.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ragserve.cache.base import Cache, document_tag
from ragserve.cache.entries import (
    answer_key,
    decode_answer,
    decode_chunks,
    encode_answer,
    encode_chunks,
    retrieval_key,
    tags_for,
)
from ragserve.errors import CacheError
from ragserve.observability.metrics import get_metrics
from ragserve.types import Answer, ChatTurn, Filters, Scope, ScoredChunk, SearchMode

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ragserve.cache.semantic import SemanticCache


def collection_tag(scope: Scope) -> str:
    return f"col:{scope.tenant}:{scope.collection}"


@dataclass(frozen=True, slots=True)
class QueryParams:
    mode: SearchMode
    top_k: int
    filters: Filters | None = None
    max_tokens: int | None = None
    history: Sequence[ChatTurn] = ()


@dataclass(slots=True)
class Lookup:
    """What a lookup found: an answer (exact or semantic), and whatever it computed on the way."""

    answer: Answer | None = None
    vector: np.ndarray | None = None
    degraded: list[str] = field(default_factory=list)


class QueryCache:
    def __init__(
        self,
        cache: Cache,
        *,
        ttl_s: float,
        config: str,
        live: Callable[[Scope, list[int]], Awaitable[set[int]]],
        semantic: SemanticCache | None = None,
        semantic_params: QueryParams | None = None,
    ) -> None:
        self.cache = cache
        self.live = live
        self.ttl_s = ttl_s
        self.config = config  # a fingerprint of everything configured that changes results
        self.semantic = semantic
        # A rephrased question may reuse an answer only when everything else about it is the default.
        self.semantic_params = semantic_params

    def _answer_key(self, scope: Scope, query: str, params: QueryParams, generator: str) -> str:
        return answer_key(
            scope,
            query,
            mode=params.mode,
            top_k=params.top_k,
            filters=params.filters,
            max_tokens=params.max_tokens,
            history=params.history,
            generator=generator,
            config=self.config,
        )

    async def lookup(
        self,
        scope: Scope,
        query: str,
        params: QueryParams,
        generator: str,
        *,
        embed: Callable[[], Awaitable[np.ndarray]] | None = None,
        retrieve: Callable[[], Awaitable[list[ScoredChunk]]] | None = None,
    ) -> Lookup:
        found = Lookup()
        key = self._answer_key(scope, query, params, generator)
        raw = await self._get(key, "answer", found)
        if raw is not None:
            answer = decode_answer(raw)
            if await self._current(scope, key, answer.sources):
                answer.cached = "exact"
                found.answer = answer
                return found
        # The semantic cache answers a rephrasing only where the conversation cannot change the meaning.
        if self.semantic is None or embed is None or retrieve is None or params != self.semantic_params:
            return found
        found.vector = await embed()

        async def evidence() -> list[str]:
            return [c.document_id for c in await retrieve()]

        try:
            hit = await self.semantic.lookup(scope, query, found.vector, evidence)
        except CacheError as exc:
            self._failed("semantic", exc, found)
            return found
        if hit is not None:
            answer = decode_answer(hit.payload)
            if not await self._current(scope, hit.key, answer.sources):
                return found
            answer.cached = "semantic"
            answer.cache_similarity = round(hit.similarity, 4)
            found.answer = answer
        return found

    async def store(
        self, scope: Scope, query: str, params: QueryParams, generator: str, answer: Answer, vector: np.ndarray | None
    ) -> None:
        if answer.degraded or not answer.answered or not answer.sources:
            return
        key = self._answer_key(scope, query, params, generator)
        try:
            await self.cache.set(key, encode_answer(answer), ttl_s=self.ttl_s, tags=tags_for(scope, answer.sources))
        except CacheError as exc:
            self._failed("answer", exc, None)
            return
        if self.semantic is not None and vector is not None and params == self.semantic_params:
            cited = sorted({c.document_id for c in answer.citations})
            self.semantic.remember(scope, query, vector, key, [c.document_id for c in answer.sources], cited)

    async def retrieval(self, scope: Scope, query: str, params: QueryParams) -> tuple[str, list[ScoredChunk] | None]:
        key = retrieval_key(
            scope, query, mode=params.mode, top_k=params.top_k, filters=params.filters, config=self.config
        )
        raw = await self._get(key, "retrieval", None)
        if raw is None:
            return key, None
        chunks = decode_chunks(raw)
        return key, (chunks if await self._current(scope, key, chunks) else None)

    async def store_retrieval(self, scope: Scope, key: str, chunks: Sequence[ScoredChunk]) -> None:
        tags = [*tags_for(scope, chunks), collection_tag(scope)]
        try:
            await self.cache.set(key, encode_chunks(chunks), ttl_s=self.ttl_s, tags=tags)
        except CacheError as exc:
            self._failed("retrieval", exc, None)

    async def invalidate(self, scope: Scope, document_ids: Sequence[str]) -> None:
        """Evict what used these documents, and the collection's cached searches. Raises CacheError if it could not."""
        tags = [document_tag(scope.tenant, scope.collection, d) for d in document_ids]
        await self.cache.invalidate_tags([*tags, collection_tag(scope)])

    async def _current(self, scope: Scope, key: str, chunks: Sequence[ScoredChunk]) -> bool:
        ids = [c.chunk_id for c in chunks]
        if await self.live(scope, ids) == set(ids):
            return True
        metrics = getattr(get_metrics(), "cache_requests", None)
        if metrics is not None:
            metrics.labels(layer="l1", result="stale").inc()
        with contextlib.suppress(CacheError):  # it is refused on every read anyway
            await self.cache.delete(key)
        return False

    async def _get(self, key: str, kind: str, found: Lookup | None) -> bytes | None:
        try:
            return await self.cache.get(key)
        except CacheError as exc:
            self._failed(kind, exc, found)
            return None

    def _failed(self, kind: str, exc: CacheError, found: Lookup | None) -> None:
        log.warning("cache unavailable (%s): %s", kind, exc.message)
        get_metrics().degraded.labels(mode="cache_unavailable").inc()
        if found is not None and "cache_unavailable" not in found.degraded:
            found.degraded.append("cache_unavailable")
