"""The in-process cache: TTL + LRU, bounded by entries and by bytes, with a tag index.

    cache = MemoryCache(max_entries=10_000, max_bytes=64 * 2**20)
    await cache.set("answer:…", payload, ttl_s=3600, tags=["doc:acme:docs:faq.md"])
    await cache.invalidate_tags(["doc:acme:docs:faq.md"])   # -> 1

An entry's size is its value's length plus its key's UTF-8 length. `get` and `set` are O(1)
(plus one step per tag); expired entries are dropped when they are read or reach the LRU end,
and `stats` sweeps them all so its count is exact. Evictions are counted by reason in
`rag_cache_evictions_total`: `lru` (over `max_entries`), `size` (over `max_bytes`, or a value
that alone exceeds it), `ttl` and `tag`. A bound of 0 turns the cache off.

It serves one process and one event loop: no method awaits, so none is interleaved with another.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragserve.cache.base import CacheStats
from ragserve.observability.metrics import CACHE_LAYERS, get_metrics


@dataclass(slots=True)
class _Entry:
    value: bytes
    size: int
    expires_at: float | None
    tags: tuple[str, ...]


class MemoryCache:
    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
        layer: str = "l1",
    ) -> None:
        """`layer` labels this cache's lookups in metrics: "l1", or "embedding" / "semantic" when used alone there."""
        if max_entries < 0 or max_bytes < 0:
            raise ValueError(f"max_entries and max_bytes must be >= 0, got {max_entries} and {max_bytes}")
        if layer not in CACHE_LAYERS:
            raise ValueError(f"layer must be one of {sorted(CACHE_LAYERS)}, got {layer!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._tags: dict[str, set[str]] = {}
        self._bytes = 0

        metrics = get_metrics()
        self._hits = metrics.cache_requests.labels(layer=layer, result="hit")
        self._misses = metrics.cache_requests.labels(layer=layer, result="miss")
        self._latency = metrics.cache_latency.labels(layer=layer)
        self._evicted = {
            reason: metrics.cache_evictions.labels(reason=reason) for reason in ("lru", "ttl", "tag", "size")
        }

    @property
    def name(self) -> str:
        return "memory"

    async def get(self, key: str) -> bytes | None:
        started = time.perf_counter()
        value = self.lookup(key)
        self._record(value is not None, started)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        started = time.perf_counter()
        values = [self.lookup(key) for key in keys]
        hits = sum(v is not None for v in values)
        self._hits.inc(hits)
        self._misses.inc(len(values) - hits)
        self._latency.observe(time.perf_counter() - started)
        return values

    def lookup(self, key: str) -> bytes | None:
        """`get` without counting it in metrics, for wrappers that count their own (TieredCache)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            self._remove(key, entry, "ttl")
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None, tags: Sequence[str] = ()) -> None:
        if ttl_s is not None and not (ttl_s > 0 and math.isfinite(ttl_s)):
            raise ValueError(f"ttl_s must be a positive number of seconds or None, got {ttl_s}")
        old = self._entries.get(key)
        if old is not None:
            self._remove(key, old, None)
        if self.max_entries == 0 or self.max_bytes == 0:
            return
        size = len(key.encode("utf-8")) + len(value)
        if size > self.max_bytes:
            # Refused rather than stored by evicting everything else; the old value went above.
            self._evicted["size"].inc()
            return
        entry = _Entry(value, size, None if ttl_s is None else self._clock() + ttl_s, tuple(dict.fromkeys(tags)))
        self._entries[key] = entry
        self._bytes += size
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(key)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            reason = "lru" if len(self._entries) > self.max_entries else "size"
            oldest_key, oldest = next(iter(self._entries.items()))
            self._remove(oldest_key, oldest, "ttl" if self._expired(oldest) else reason)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                self._remove(key, entry, None)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        keys: set[str] = set()
        for tag in tags:
            keys |= self._tags.get(tag, set())
        removed = 0
        for key in keys:
            entry = self._entries[key]
            expired = self._expired(entry)
            self._remove(key, entry, "ttl" if expired else "tag")
            removed += not expired
        return removed

    async def stats(self) -> CacheStats:
        for key, entry in list(self._entries.items()):
            if self._expired(entry):
                self._remove(key, entry, "ttl")
        return CacheStats(entries=len(self._entries), bytes=self._bytes)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._entries.clear()
        self._tags.clear()
        self._bytes = 0

    def _expired(self, entry: _Entry) -> bool:
        return entry.expires_at is not None and self._clock() >= entry.expires_at

    def _remove(self, key: str, entry: _Entry, reason: str | None) -> None:
        del self._entries[key]
        self._bytes -= entry.size
        for tag in entry.tags:
            keys = self._tags[tag]
            keys.discard(key)
            if not keys:
                del self._tags[tag]
        if reason is not None:
            self._evicted[reason].inc()

    def _record(self, hit: bool, started: float) -> None:
        (self._hits if hit else self._misses).inc()
        self._latency.observe(time.perf_counter() - started)
