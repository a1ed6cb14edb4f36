"""An Embedder that remembers: vectors by model and text, in any Cache, failing open.

Query embeddings are looked up before the model runs; document embeddings too, so a
changed document re-embeds only its changed chunks. Entries have no TTL: the key holds
the model's name, so a model change simply stops finding them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ragserve.cache.base import Cache
from ragserve.cache.codec import decode_vector, encode_vector
from ragserve.cache.entries import embedding_key
from ragserve.embed.base import Embedder
from ragserve.errors import CacheError
from ragserve.observability.metrics import get_metrics

log = logging.getLogger(__name__)


class CachedEmbedder:
    def __init__(self, inner: Embedder, cache: Cache) -> None:
        self.inner = inner
        self.cache = cache
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens

    @property
    def ready(self) -> bool:
        return bool(getattr(self.inner, "ready", True))

    def __getattr__(self, name: str) -> object:
        # Anything else (backend, device) is the wrapped model's: /status reports it through here.
        return getattr(self.inner, name)

    async def embed_query(self, text: str) -> np.ndarray:
        key = embedding_key(self.model_name, text)
        cached = await self._get_many([key])
        if cached[0] is not None:
            return cached[0]
        vector = await self.inner.embed_query(text)
        await self._set(key, vector)
        return vector

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        keys = [embedding_key(self.model_name, t) for t in texts]
        found = await self._get_many(keys) if keys else []
        missing = [i for i, v in enumerate(found) if v is None]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, v in enumerate(found):
            if v is not None:
                out[i] = v
        if missing:
            computed = await self.inner.embed_documents([texts[i] for i in missing])
            for row, i in enumerate(missing):
                out[i] = computed[row]
                await self._set(keys[i], computed[row])
        return out

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _get_many(self, keys: list[str]) -> list[np.ndarray | None]:
        try:
            raw = await self.cache.get_many(keys)
        except CacheError as exc:
            log.warning("embedding cache unavailable: %s", exc.message)
            return [None] * len(keys)
        vectors: list[np.ndarray | None] = []
        for value in raw:
            try:
                vectors.append(decode_vector(value, self.dimension) if value is not None else None)
            except CacheError:
                vectors.append(None)  # a corrupt entry is a miss; the next set overwrites it
        hits = sum(v is not None for v in vectors)
        metrics = getattr(get_metrics(), "cache_requests", None)
        if metrics is not None:
            metrics.labels(layer="embedding", result="hit").inc(hits)
            metrics.labels(layer="embedding", result="miss").inc(len(keys) - hits)
        return vectors

    async def _set(self, key: str, vector: np.ndarray) -> None:
        try:
            await self.cache.set(key, encode_vector(vector))
        except CacheError as exc:
            log.warning("embedding cache unavailable: %s", exc.message)
