"""The Cache protocol: bytes by key, with a TTL and tags that evict every entry carrying them.

Values are bytes (JSON documents, or raw float32 for vectors), never pickle. Tags are how
writes stay honest: an entry caching an answer is tagged with every document it used, and
`invalidate_tags` evicts exactly those entries, in every process that shares the cache,
before it returns.

    await cache.set("answer:…", payload, ttl_s=3600, tags=["doc:acme:docs:faq.md"])
    await cache.get("answer:…")                       # -> payload
    await cache.invalidate_tags(["doc:acme:docs:faq.md"])
    await cache.get("answer:…")                       # -> None, here and on every replica

Implementations raise `ragserve.errors.CacheError` when the backend cannot be reached; callers
fail open (serve uncached) on it. Every implementation runs `tests/contract/test_cache_contract.py`.

`ttl_s` must be positive and finite (ValueError otherwise). Give every entry that can go stale
the tags of what it was built from: a replica may serve an *untagged* entry from its in-process
copy without asking the shared cache (`TieredCache`), so untagged keys must name content that
never changes under the same key (an embedding keyed by model and text).

Implementations: `memory.MemoryCache` (in-process), `redis.RedisCache` (shared), and
`tiered.TieredCache` (the first over the second, failing open when Redis is down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int | None = None  # None when the backend cannot tell cheaply


class Cache(Protocol):
    @property
    def name(self) -> str:
        """Short and bounded, for metrics and /status: "memory", "redis", "tiered"."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in the order of `keys`, None for each miss (one round trip where the backend allows)."""
        ...

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None, tags: Sequence[str] = ()) -> None:
        """Store `value`; `ttl_s=None` keeps it until evicted. Tags link it to what it was built from."""
        ...

    async def delete(self, *keys: str) -> None: ...

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Evict every entry tagged with any of `tags`, everywhere; the number evicted where known."""
        ...

    async def stats(self) -> CacheStats: ...

    async def ping(self) -> None:
        """Raise CacheError when the cache cannot serve."""
        ...

    async def aclose(self) -> None: ...


def document_tag(tenant: str, collection: str, document_id: str) -> str:
    """The tag of cached entries built from one document of one tenant's collection."""
    return f"doc:{tenant}:{collection}:{document_id}"
