"""Settings in, parts out: the one place that decides which implementation plays each role."""

from __future__ import annotations

import asyncio

from ragserve.embed.base import Embedder
from ragserve.ingest.chunk import ChunkingConfig, default_token_counter
from ragserve.ingest.pipeline import IngestPipeline
from ragserve.llm.base import LLMProvider
from ragserve.llm.extractive import ExtractiveAnswerer
from ragserve.rag import RAG
from ragserve.retrieve.hybrid import HybridRetriever
from ragserve.settings import Settings
from ragserve.store.ann import HnswParams
from ragserve.store.base import VectorStore
from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.types import FusionParams


def build_embedder(settings: Settings) -> Embedder:
    from ragserve.embed.local import LocalEmbedder

    return LocalEmbedder(
        settings.embed_backend,
        cache_dir=settings.data_dir / "models",
        device=settings.embed_device,
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
    )


def build_store(settings: Settings, embedder: Embedder) -> VectorStore:
    hnsw = HnswParams(
        m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction, ef_search=settings.hnsw_ef_search
    )
    return EmbeddedVectorStore(settings.data_dir, embedder.dimension, embedder.model_name, hnsw)


def build_generator(settings: Settings) -> LLMProvider:
    return ExtractiveAnswerer()


def fusion_params(settings: Settings) -> FusionParams:
    return FusionParams(settings.rrf_k, settings.dense_weight, settings.keyword_weight, settings.candidates)


async def build_rag(settings: Settings) -> RAG:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = await asyncio.to_thread(build_embedder, settings)
    store = await asyncio.to_thread(build_store, settings, embedder)
    chunking = ChunkingConfig(max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)
    pipeline = IngestPipeline(embedder, store, default_token_counter(), chunking)
    retriever = HybridRetriever(embedder, store, fusion_params(settings), settings.max_query_chars)
    return RAG(
        settings=settings,
        embedder=embedder,
        store=store,
        generator=build_generator(settings),
        pipeline=pipeline,
        retriever=retriever,
    )
