"""The facade: one object that ingests, searches and answers, with no HTTP in sight.

async with RAG.from_settings(Settings()) as rag:
    await rag.ingest_paths(["docs/"])
    answer = await rag.query("How do I change the port?")
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from opentelemetry import trace

from ragserve.answer import answer_pieces, build_answer
from ragserve.cache.query_cache import QueryCache, QueryParams
from ragserve.cache.recent import RecentQueries
from ragserve.embed.base import Embedder
from ragserve.errors import (
    CacheError,
    DeadlineExceededError,
    DependencyError,
    InvalidInputError,
    MaintenanceError,
    NotFoundError,
    RagserveError,
)
from ragserve.ingest.inputs import document_input_to_parsed
from ragserve.ingest.parse import ParseFailure, parse_paths
from ragserve.ingest.pipeline import IngestPipeline, IngestReport, ProgressCallback
from ragserve.llm.base import Generation, LLMProvider, TokenDelta
from ragserve.llm.extractive import ExtractiveAnswerer
from ragserve.llm.prompt import PROMPT_VERSION
from ragserve.observability.metrics import get_metrics
from ragserve.observability.tracing import stage_span, tracer
from ragserve.resilience.breaker import BreakerRegistry
from ragserve.resilience.deadline import Deadline, deadline_scope
from ragserve.retrieve.conversation import standalone_question
from ragserve.retrieve.hybrid import HybridRetriever, Retrieval
from ragserve.security.guards import QueryGuard
from ragserve.settings import Settings
from ragserve.store.base import VectorStore
from ragserve.types import (
    Answer,
    ChatTurn,
    CollectionStats,
    DocumentInfo,
    DocumentInput,
    Filters,
    ParsedDocument,
    QueryDone,
    QueryEvent,
    QuerySources,
    QueryToken,
    Scope,
    ScoredChunk,
    SearchMode,
    check_name,
)

log = logging.getLogger(__name__)
MAINTENANCE_FILE = "MAINTENANCE"
MAINTENANCE_CHECK_S = 0.5
MAX_OFFSET = 2**62  # SQLite's integers are 64-bit


@dataclass(slots=True)
class CachedLookup:
    answer: Answer | None = None
    vector: np.ndarray | None = None
    retrieval: Retrieval | None = None
    degraded: list[str] = field(default_factory=list)
    cache_ms: float | None = None


class RAG:
    def __init__(
        self,
        *,
        settings: Settings,
        embedder: Embedder,
        store: VectorStore,
        generator: LLMProvider,
        pipeline: IngestPipeline,
        retriever: HybridRetriever,
        breakers: BreakerRegistry | None = None,
        query_cache: QueryCache | None = None,
    ) -> None:
        self.settings = settings
        self.query_guard = QueryGuard(settings.guard_query_action)
        self.embedder = embedder
        self.store = store
        self.generator = generator
        self.pipeline = pipeline
        self.retriever = retriever
        self.breakers = breakers if breakers is not None else BreakerRegistry()
        self.query_cache = query_cache
        self.recent = RecentQueries(settings.data_dir) if query_cache is not None else None
        if query_cache is not None:
            pipeline.on_written = self._invalidate
        self.fallback = ExtractiveAnswerer()
        self.warmed = False
        self._maintenance = False
        self._maintenance_checked = -MAINTENANCE_CHECK_S

    @classmethod
    async def from_settings(cls, settings: Settings | None = None) -> RAG:
        from ragserve.build import build_rag

        return await build_rag(settings or Settings())

    async def __aenter__(self) -> RAG:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.recent is not None:
            await asyncio.to_thread(self.recent.save)
        await self.embedder.aclose()
        await self.store.aclose()

    def scope(self, collection: str | None = None, tenant: str | None = None) -> Scope:
        return Scope(
            tenant=check_name(tenant or self.settings.default_tenant, "tenant"),
            collection=check_name(collection or self.settings.default_collection, "collection"),
        )

    # ---------------------------------------------------------------- ingest

    async def ingest_paths(
        self, paths: Iterable[str | Path], scope: Scope | None = None, *, on_progress: ProgressCallback | None = None
    ) -> IngestReport:
        """Parse files and directories; a bad file fails alone and the rest goes on."""
        self.check_service()
        parsed = await asyncio.to_thread(lambda: list(parse_paths(paths)))
        docs = [p for p in parsed if isinstance(p, ParsedDocument)]
        failures = [p for p in parsed if isinstance(p, ParseFailure)]
        return await self.pipeline.ingest(scope or self.scope(), docs, failures=failures, on_progress=on_progress)

    async def add_documents(self, documents: Sequence[DocumentInput], scope: Scope | None = None) -> IngestReport:
        self.check_service()
        return await self.pipeline.ingest(
            scope or self.scope(), [document_input_to_parsed(d, i) for i, d in enumerate(documents)]
        )

    async def ingest_parsed(self, documents: Sequence[ParsedDocument], scope: Scope | None = None) -> IngestReport:
        return await self.pipeline.ingest(scope or self.scope(), documents)

    async def delete_document(self, document_id: str, scope: Scope | None = None) -> None:
        self.check_service()
        scope = scope or self.scope()
        if not await self.store.delete(scope, document_id):
            raise NotFoundError(f"document {document_id!r} not found")
        await self._invalidate(scope, [document_id])

    async def get_document(self, document_id: str, scope: Scope | None = None) -> DocumentInfo:
        info = await self.store.get_document(scope or self.scope(), document_id)
        if info is None:
            raise NotFoundError(f"document {document_id!r} not found")
        return info

    async def list_documents(
        self, scope: Scope | None = None, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[DocumentInfo], int]:
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be between 1 and 1000", field="limit")
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidInputError(f"offset must be between 0 and {MAX_OFFSET}", field="offset")
        return await self.store.list_documents(scope or self.scope(), limit=limit, offset=offset)

    async def stats(self, scope: Scope | None = None) -> CollectionStats:
        return await self.store.stats(scope or self.scope())

    async def collections(self, tenant: str | None = None) -> list[str]:
        """The tenant's collection names, sorted."""
        return await self.store.list_collections(self.scope(tenant=tenant).tenant)

    async def totals(self) -> CollectionStats:
        """Documents and chunks across every tenant and collection."""
        return await self.store.totals()

    # ------------------------------------------------------------------ read

    async def search(
        self,
        query: str,
        scope: Scope | None = None,
        *,
        top_k: int | None = None,
        mode: SearchMode | None = None,
        filters: Filters | None = None,
        mmr_lambda: float | None = None,
        candidates: int | None = None,
        use_cache: bool = True,
    ) -> Retrieval:
        """Retrieval only. The question passes the injection guard first (RAGSERVE_GUARD_QUERY_ACTION)."""
        return await self._search(
            self.query_guard.check(query),
            scope or self.scope(),
            top_k=top_k,
            mode=mode,
            filters=filters,
            mmr_lambda=mmr_lambda,
            candidates=candidates,
            use_cache=use_cache,
        )

    async def _search(
        self,
        query: str,
        scope: Scope,
        *,
        top_k: int | None = None,
        mode: SearchMode | None = None,
        filters: Filters | None = None,
        mmr_lambda: float | None = None,
        candidates: int | None = None,
        use_cache: bool = True,
    ) -> Retrieval:
        self.check_service()
        params = self._params(top_k, mode, filters, None, ())
        # Only the configured retrieval is cached: an evaluation's own depth or MMR is not.
        cacheable = use_cache and self.query_cache is not None and mmr_lambda is None and candidates is None
        key = None
        if cacheable and self.query_cache is not None and isinstance(query, str):
            started = time.perf_counter()
            key, chunks = await self.query_cache.retrieval(scope, query, params)
            if chunks is not None:
                timings = {"cache": round((time.perf_counter() - started) * 1000, 3)}
                return Retrieval(chunks, params.mode, timings, cached=True)
        retrieval = await self.retriever.retrieve(
            query,
            scope,
            k=params.top_k,
            mode=params.mode,
            filters=filters,
            mmr_lambda=mmr_lambda if mmr_lambda is not None else self.settings.mmr_lambda,
            candidates=candidates,
        )
        if key is not None and self.query_cache is not None and not retrieval.degraded:
            await self.query_cache.store_retrieval(scope, key, retrieval.chunks)
        return retrieval

    async def query(
        self,
        query: str,
        scope: Scope | None = None,
        *,
        top_k: int | None = None,
        mode: SearchMode | None = None,
        filters: Filters | None = None,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
        timeout_s: float | None = None,
        use_cache: bool = True,
    ) -> Answer:
        """Retrieve, then answer with citations, within one time budget.

        `history` is the conversation before `query`; `timeout_s` overrides the configured
        budget up to `max_request_timeout_s`; `use_cache=False` neither reads nor fills caches.
        """
        started = time.perf_counter()
        query = self.query_guard.check(query)
        scope = scope or self.scope()
        deadline = self._deadline(timeout_s)
        params = self._params(top_k, mode, filters, max_tokens, history)
        with (
            deadline_scope(deadline),
            stage_span("rag.query", {"rag.collection": scope.collection}),
        ):
            found = await self._cached(query, scope, params, deadline) if use_cache else CachedLookup()
            if found.answer is not None:
                return self._from_cache(scope, query, params, found, started)
            retrieval = found.retrieval or await self._retrieve(query, scope, params, deadline, use_cache)
            generate_started = time.perf_counter()
            with stage_span("generate", {"rag.provider": self.generator.name}):
                generation = await self._generate(query, retrieval, max_tokens, history, deadline)
            answer = build_answer(
                retrieval, generation, generate_started, started, extra_degraded=found.degraded, cache_ms=found.cache_ms
            )
            return await self._finish(scope, query, params, found, answer, use_cache)

    @property
    def _generator_id(self) -> str:
        return f"{self.generator.name}:{self.generator.model}:{PROMPT_VERSION}"

    def _params(
        self,
        top_k: int | None,
        mode: SearchMode | None,
        filters: Filters | None,
        max_tokens: int | None,
        history: Sequence[ChatTurn],
    ) -> QueryParams:
        return QueryParams(
            mode or self.settings.search_mode, top_k or self.settings.top_k, filters, max_tokens, tuple(history)
        )

    async def _cached(self, query: str, scope: Scope, params: QueryParams, deadline: Deadline) -> CachedLookup:
        """An exact or semantic hit, or what the lookup computed (vector, retrieval) for the miss to reuse."""
        if self.query_cache is None:
            return CachedLookup()
        retrieval: Retrieval | None = None

        async def embed() -> np.ndarray:
            return await self.embedder.embed_query(query)

        async def retrieve() -> list[ScoredChunk]:
            nonlocal retrieval
            retrieval = await self._retrieve(query, scope, params, deadline)
            return retrieval.chunks

        started = time.perf_counter()
        found = await self.query_cache.lookup(scope, query, params, self._generator_id, embed=embed, retrieve=retrieve)
        return CachedLookup(
            found.answer, found.vector, retrieval, found.degraded, (time.perf_counter() - started) * 1000
        )

    async def query_stream(
        self,
        query: str,
        scope: Scope | None = None,
        *,
        top_k: int | None = None,
        mode: SearchMode | None = None,
        filters: Filters | None = None,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
        timeout_s: float | None = None,
        use_cache: bool = True,
    ) -> AsyncGenerator[QueryEvent, None]:
        """The same answer as `query`, as events: `QuerySources`, `QueryToken`s, then `QueryDone`.

        Bad input raises before the first event, so a caller can still answer with an error
        status; a failure later raises out of the iteration (after the first token, the
        router does not switch providers: it raises, and the caller reports the break).
        """
        started = time.perf_counter()
        query = self.query_guard.check(query)
        scope = scope or self.scope()
        deadline = self._deadline(timeout_s)
        # The consumer may step this generator from several tasks (a web server primes it in
        # the request and drains it in the response), so spans and the deadline are attached
        # per step, never across a `yield`: a context set in one task cannot be reset in another.
        params = self._params(top_k, mode, filters, max_tokens, history)
        root = tracer().start_span("rag.query", attributes={"rag.collection": scope.collection})
        try:
            with trace.use_span(root, end_on_exit=False), deadline_scope(deadline):
                found = await self._cached(query, scope, params, deadline) if use_cache else CachedLookup()
                if found.answer is None:
                    retrieval = found.retrieval or await self._retrieve(query, scope, params, deadline, use_cache)
            if found.answer is not None:
                answer = self._from_cache(scope, query, params, found, started)
                yield QuerySources(answer.sources, dict(answer.timings_ms), cached=answer.cached)
                for piece in answer_pieces(answer.answer):
                    yield QueryToken(piece)
                yield QueryDone(answer)
                return
            yield QuerySources(retrieval.chunks, {k: round(v, 3) for k, v in retrieval.timings_ms.items()})
            generate_started = time.perf_counter()
            generation: Generation | None = None
            span = tracer().start_span(
                "generate", context=trace.set_span_in_context(root), attributes={"rag.provider": self.generator.name}
            )
            stream = self.generator.stream(query, retrieval.chunks, max_tokens=max_tokens, history=history)
            try:
                while True:
                    with trace.use_span(span, end_on_exit=False), deadline_scope(deadline):
                        item = await anext(stream, None)
                    if item is None:
                        break
                    if isinstance(item, TokenDelta):
                        yield QueryToken(item.text)
                    else:
                        generation = item
            finally:
                span.end()
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()  # a client that went away must not leave the provider's stream open
            if generation is None:
                raise DependencyError(f"provider {self.generator.name!r} ended its stream without an answer")
            answer = build_answer(
                retrieval, generation, generate_started, started, extra_degraded=found.degraded, cache_ms=found.cache_ms
            )
            yield QueryDone(await self._finish(scope, query, params, found, answer, use_cache))
        finally:
            root.end()

    def _from_cache(self, scope: Scope, query: str, params: QueryParams, found: CachedLookup, started: float) -> Answer:
        assert found.answer is not None
        answer = found.answer
        total = (time.perf_counter() - started) * 1000
        answer.timings_ms = {"cache": round(found.cache_ms or 0.0, 3), "total": round(total, 3)}
        answer.degraded = list(found.degraded)
        self._remember(scope, query, params, answer)
        return answer

    async def _finish(
        self, scope: Scope, query: str, params: QueryParams, found: CachedLookup, answer: Answer, use_cache: bool
    ) -> Answer:
        """A freshly generated answer, cached (when allowed) and counted as asked."""
        if use_cache and self.query_cache is not None:
            await self.query_cache.store(scope, query, params, self._generator_id, answer, found.vector)
        self._remember(scope, query, params, answer)
        return answer

    async def _invalidate(self, scope: Scope, document_ids: list[str]) -> None:
        """Evict cached answers and searches built from these documents (a failure is logged, not raised:
        hits are checked against the store before they are served, so nothing stale can come back)."""
        if self.query_cache is None:
            return
        try:
            await self.query_cache.invalidate(scope, document_ids)
        except CacheError as exc:
            log.warning("cache eviction failed for %d documents: %s", len(document_ids), exc.message)

    def check_service(self) -> None:
        """Raise MaintenanceError while the operator has switched the service to maintenance."""
        if self.maintenance():
            raise MaintenanceError("the service is in maintenance; try again later")

    def _deadline(self, timeout_s: float | None) -> Deadline:
        self.check_service()
        if timeout_s is not None and not timeout_s > 0:
            raise InvalidInputError("timeout_s must be positive", field="timeout_s")
        # A request may ask for less time than the default, or more up to the operator's cap.
        return Deadline(min(timeout_s or self.settings.request_timeout_s, self.settings.max_request_timeout_s))

    def maintenance(self) -> bool:
        """The operator's switch: RAGSERVE_MAINTENANCE, or a MAINTENANCE file in the shared data directory.

        The file is looked at no more than every `MAINTENANCE_CHECK_S`, not on every request.
        """
        if self.settings.maintenance:
            return True
        now = time.monotonic()
        if now - self._maintenance_checked >= MAINTENANCE_CHECK_S:
            self._maintenance_checked = now
            self._maintenance = (self.settings.data_dir / MAINTENANCE_FILE).exists()
        return self._maintenance

    async def _generate(
        self,
        query: str,
        retrieval: Retrieval,
        max_tokens: int | None,
        history: Sequence[ChatTurn],
        deadline: Deadline,
    ) -> Generation:
        try:
            async with asyncio.timeout(deadline.remaining()):
                return await self.generator.generate(query, retrieval.chunks, max_tokens=max_tokens, history=history)
        except TimeoutError:
            # The router keeps to the deadline itself; this catches a provider that does not.
            get_metrics().stage_skipped.labels(stage="generate", reason="deadline").inc()
            generation = await self.fallback.generate(query, retrieval.chunks, max_tokens=max_tokens, history=history)
            generation.degraded.append("deadline")
            return generation

    async def _retrieve(
        self, query: str, scope: Scope, params: QueryParams, deadline: Deadline, use_cache: bool = True
    ) -> Retrieval:
        try:
            async with asyncio.timeout(deadline.remaining()):
                return await self._search(
                    standalone_question(query, params.history),
                    scope,
                    top_k=params.top_k,
                    mode=params.mode,
                    filters=params.filters,
                    use_cache=use_cache,
                )
        except TimeoutError as exc:
            get_metrics().stage_skipped.labels(stage="retrieve", reason="deadline").inc()
            raise DeadlineExceededError(
                f"retrieval did not finish within the request's {deadline.budget_s:g}s budget"
            ) from exc

    def _remember(self, scope: Scope, query: str, params: QueryParams, answer: Answer) -> None:
        if self.recent is not None and answer.answered and params == self._default_params:
            self.recent.record(scope, query)

    @property
    def _default_params(self) -> QueryParams:
        return QueryParams(self.settings.search_mode, self.settings.top_k)

    async def warm_caches(self, n: int) -> int:
        """Ask the `n` most asked recent questions again, so their answers are cached; how many were asked."""
        if self.recent is None or n <= 0:
            return 0
        asked = 0
        for scope, query in await asyncio.to_thread(self.recent.top, n):
            try:
                await self.query(query, scope)
                asked += 1
            except RagserveError as exc:
                log.warning("cache warm-up skipped a question: %s", exc.message)
        return asked

    async def warm_up(self) -> None:
        """Run one throwaway retrieval and extractive answer, so the first real query pays no first-call costs.

        It goes around the maintenance switch (a process started during maintenance must be
        ready when it ends) and does not call remote models (that would cost money per start).
        """
        with stage_span("rag.warm_up"):
            retrieval = await self.retriever.retrieve(
                "warm-up query", self.scope(), k=self.settings.top_k, mode="hybrid"
            )
            await self.fallback.generate("warm-up query", retrieval.chunks)
        self.warmed = True

    def components(self) -> dict[str, dict[str, Any]]:
        """Which implementation plays each part, for `/status`."""
        return {
            "embedder": {
                "model": self.embedder.model_name,
                "dimension": self.embedder.dimension,
                "backend": getattr(self.embedder, "backend", None),
                "device": getattr(self.embedder, "device", None),
            },
            "vector_store": {"kind": self.settings.vector_store, "class": type(self.store).__name__},
            "llm": {"provider": self.generator.name, "model": self.generator.model},
        }

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok" or the reason it is not."""
        checks: dict[str, str] = {}
        try:
            await self.store.ping()
            checks["store"] = "ok"
        except RagserveError as exc:
            checks["store"] = exc.message
        ready = getattr(self.embedder, "ready", True)
        checks["embedder"] = "ok" if ready else "model not loaded"
        checks["warm_up"] = "ok" if self.warmed else "not done"
        if self.maintenance():
            checks["maintenance"] = "on: the operator switched the service to maintenance"
        return checks
