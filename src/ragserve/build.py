"""Settings in, parts out: the one place that decides which implementation plays each role."""

from __future__ import annotations

import asyncio
import json
import logging

from ragserve.cache.base import Cache
from ragserve.cache.memory import MemoryCache
from ragserve.cache.query_cache import QueryCache, QueryParams
from ragserve.cache.semantic import SemanticCache
from ragserve.embed.base import Embedder
from ragserve.embed.cached import CachedEmbedder
from ragserve.errors import ConfigurationError
from ragserve.ingest.chunk import ChunkingConfig, default_token_counter
from ragserve.ingest.pipeline import IngestPipeline
from ragserve.llm.base import LLMProvider
from ragserve.llm.extractive import ExtractiveAnswerer
from ragserve.llm.prompt import Screen
from ragserve.llm.router import FallbackRouter, Route
from ragserve.observability.metrics import get_metrics
from ragserve.rag import RAG
from ragserve.resilience.breaker import BreakerRegistry, BreakerState
from ragserve.retrieve.hybrid import HybridRetriever
from ragserve.security.guards import ContextGuard
from ragserve.settings import ProviderSettings, Settings
from ragserve.store.ann import HnswParams
from ragserve.store.base import VectorStore
from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.types import FusionParams

log = logging.getLogger(__name__)


def build_embedder(settings: Settings) -> Embedder:
    from ragserve.embed.local import LocalEmbedder

    return LocalEmbedder(
        settings.embed_backend,
        cache_dir=settings.data_dir / "models",
        device=settings.embed_device,
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
    )


def build_cache(settings: Settings, breakers: BreakerRegistry) -> Cache:
    """In-process by default; with RAGSERVE_REDIS_URL, Redis shared by every replica under the in-process L1."""
    l1 = MemoryCache(settings.cache_l1_entries, settings.cache_l1_bytes)
    if not settings.redis_url:
        return l1
    from ragserve.cache.redis import RedisCache
    from ragserve.cache.tiered import TieredCache

    l2 = RedisCache(settings.redis_url, timeout_ms=settings.cache_timeout_ms)
    tiered: Cache = TieredCache(l1, l2, breaker=breakers.get("cache"))
    return tiered


def build_query_cache(settings: Settings, cache: Cache, store: VectorStore, embedder: Embedder) -> QueryCache:
    semantic = (
        SemanticCache(cache, threshold=settings.semantic_threshold, max_age_s=settings.cache_ttl_s)
        if settings.semantic_cache
        else None
    )
    # Everything configured that changes a result, so a configuration change never serves old results.
    config = json.dumps(
        {
            "model": embedder.model_name,
            "fusion": [settings.rrf_k, settings.dense_weight, settings.keyword_weight, settings.candidates],
            "mmr": settings.mmr_lambda,
            "ef": settings.hnsw_ef_search,
        },
        sort_keys=True,
    )
    return QueryCache(
        cache,
        ttl_s=settings.cache_ttl_s,
        config=config,
        live=store.live_chunks,
        semantic=semantic,
        semantic_params=QueryParams(settings.search_mode, settings.top_k),
    )


def build_store(settings: Settings, embedder: Embedder) -> VectorStore:
    if settings.vector_store == "qdrant":
        from ragserve.store.qdrant import QdrantVectorStore, open_client

        if not settings.qdrant_url:
            raise ConfigurationError(
                "RAGSERVE_VECTOR_STORE=qdrant needs RAGSERVE_QDRANT_URL: a server URL, ':memory:' or a directory"
            )
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantVectorStore(
            open_client(settings.qdrant_url, api_key),
            embedder.dimension,
            embedder.model_name,
            prefix=settings.qdrant_collection_prefix,
            shards=settings.qdrant_shards,
            replication=settings.qdrant_replication,
        )
    hnsw = HnswParams(
        m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction, ef_search=settings.hnsw_ef_search
    )
    return EmbeddedVectorStore(settings.data_dir, embedder.dimension, embedder.model_name, hnsw)


def build_breakers(settings: Settings) -> BreakerRegistry:
    """One breaker per dependency; transitions are logged and exported as `rag_circuit_state`."""

    def on_transition(name: str, old: BreakerState, new: BreakerState) -> None:
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit %s: %s -> %s", name, old.label, new.label)
        get_metrics().circuit_state.labels(dependency=name).set(new.value)

    return BreakerRegistry(
        failure_threshold=settings.breaker_failure_threshold,
        reset_timeout_s=settings.breaker_reset_s,
        success_threshold=settings.breaker_success_threshold,
        on_transition=on_transition,
    )


def build_generator(settings: Settings, breakers: BreakerRegistry | None = None) -> LLMProvider:
    """The providers of `RAGSERVE_LLM_PROVIDERS` behind the fallback router, ending in the extractive answerer.

    With only the extractive answerer configured (the default) it is returned as is.
    """
    breakers = breakers if breakers is not None else build_breakers(settings)
    extractive = ExtractiveAnswerer()
    screen = ContextGuard(settings.guard_context_action)
    routes = []
    for config in settings.llm_providers:
        if config.kind == "extractive":
            continue
        provider = build_provider(config, screen)
        price = settings.llm_prices.get(config.model or "")
        routes.append(
            Route(
                provider=provider,
                breaker=breakers.get(f"llm:{config.name}"),
                weight=config.weight,
                timeout_s=config.timeout_s,
                max_context_tokens=config.max_context_tokens,
                prices=(price.prompt, price.completion) if price else None,
            )
        )
    if not routes:
        return extractive
    return FallbackRouter(routes, extractive, retries=settings.llm_retries)


def build_provider(config: ProviderSettings, screen: Screen | None = None) -> LLMProvider:
    """One provider; `screen` (the context injection guard) sees each retrieved chunk before its prompt."""
    api_key = config.api_key.get_secret_value() if config.api_key else None
    if config.kind == "openai":
        from ragserve.llm.openai_compat import OpenAICompatibleProvider

        return OpenAICompatibleProvider(
            config.name,
            base_url=config.base_url or "https://api.openai.com/v1",
            api_key=api_key or "not-needed",  # local servers (vLLM, Ollama, llama.cpp) ignore it
            model=config.model or "",
            timeout_s=config.timeout_s,
            max_context_tokens=config.max_context_tokens,
            max_tokens=config.max_tokens,
            screen=screen,
        )
    if config.kind == "anthropic":
        from ragserve.llm.anthropic import AnthropicProvider

        return AnthropicProvider(
            config.name,
            base_url=config.base_url,
            api_key=api_key or "",
            model=config.model or "",
            timeout_s=config.timeout_s,
            max_context_tokens=config.max_context_tokens,
            max_tokens=config.max_tokens,
            screen=screen,
        )
    raise ConfigurationError(f"provider {config.name!r}: unknown kind {config.kind!r}")


def fusion_params(settings: Settings) -> FusionParams:
    return FusionParams(settings.rrf_k, settings.dense_weight, settings.keyword_weight, settings.candidates)


async def build_rag(settings: Settings) -> RAG:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    breakers = build_breakers(settings)
    cache = build_cache(settings, breakers)
    model = await asyncio.to_thread(build_embedder, settings)
    embedder = CachedEmbedder(model, cache)
    store = await asyncio.to_thread(build_store, settings, embedder)
    chunking = ChunkingConfig(max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)
    pipeline = IngestPipeline(embedder, store, default_token_counter(), chunking)
    retriever = HybridRetriever(
        embedder,
        store,
        fusion_params(settings),
        settings.max_query_chars,
        embed_breaker=breakers.get("embedder"),
        store_breaker=breakers.get("vector_store"),
    )
    generator = build_generator(settings, breakers)
    for breaker in breakers:  # exported from the start, not only after a first transition
        get_metrics().circuit_state.labels(dependency=breaker.name).set(breaker.state.value)
    return RAG(
        settings=settings,
        embedder=embedder,
        store=store,
        generator=generator,
        pipeline=pipeline,
        retriever=retriever,
        breakers=breakers,
        query_cache=build_query_cache(settings, cache, store, embedder),
    )
