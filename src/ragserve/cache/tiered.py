"""An in-process L1 over a shared Redis L2, that never serves this replica's copy after a write elsewhere.

    cache = TieredCache(MemoryCache(10_000, 64 * 2**20), RedisCache(url, timeout_ms=20),
                        breaker=CircuitBreaker("cache:redis", failure_threshold=5, reset_timeout_s=5))

Freshness. The L1 keeps each entry as Redis stored it: a header (a write stamp, the entry's tags
and their generations at write time) and the value. A tagged L1 hit is served only after one
round trip (`RedisCache.fetch`) confirms that the record in Redis is still that write and that
none of its tags was invalidated since; otherwise the answer brings the current record (or
none) in the same trip. So an invalidation, an overwrite or a delete on any replica is seen by
this one's very next read. An entry without tags is served from L1 without asking: untagged
keys must name immutable content (an embedding keyed by model and text), since a delete or
overwrite elsewhere does not reach this L1 until the entry's TTL.

Failing open. Every L2 call goes through `breaker` and a deadline. When L2 is down, slow or its
breaker open:
- `get`/`get_many` answer a miss for anything whose freshness cannot be checked: a tagged L1
  entry is never served unverified. Untagged L1 entries are still served (they need no check).
- `set` does not raise. A tagged value is not kept in L1 either: with no record in L2 to check
  it against it could never be served, and serving it unchecked would miss invalidations made
  on other replicas meanwhile. An untagged value is kept in L1 only. Either way the key's
  previous L1 copy is dropped, so an older value never outlives a newer write here.
- `invalidate_tags` and `delete` evict locally, then raise `CacheError`: other replicas and L2
  still hold the entries, so the caller must know (retry, or fail the write). The tags are also
  remembered and applied before this instance's next L2 call, which therefore fails (a miss)
  until they are.
- `stats` and `ping` raise `CacheError`.
Errors are counted in `rag_cache_requests_total{result="error"}`; recovery needs no restart: the
breaker lets a probe through after its reset timeout and closes on success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ragserve.cache.base import CacheStats
from ragserve.cache.memory import MemoryCache
from ragserve.cache.redis import RedisCache, RedisRecord, header_tags, split_record
from ragserve.errors import CacheError, CircuitOpenError
from ragserve.observability.metrics import get_metrics
from ragserve.resilience.breaker import CircuitBreaker

T = TypeVar("T")

_LOCAL_HEADER = b'[""]'  # an untagged entry kept only in L1, while L2 was unreachable


class TieredCache:
    def __init__(
        self, l1: MemoryCache, l2: RedisCache, *, breaker: CircuitBreaker, timeout_ms: float | None = None
    ) -> None:
        """`timeout_ms` bounds each L2 read and write (default: the L2's own `timeout_ms`)."""
        self.l1 = l1
        self.l2 = l2
        self.breaker = breaker
        self._timeout_s = l2.timeout_s if timeout_ms is None else timeout_ms / 1000
        self._pending_tags: dict[str, None] = {}  # invalidations L2 has not seen yet, in order

        metrics = get_metrics()
        results = ("hit", "miss", "stale", "error")
        self._l1_results = {r: metrics.cache_requests.labels(layer="l1", result=r) for r in results}
        self._l1_latency = metrics.cache_latency.labels(layer="l1")
        self._l2_errors = metrics.cache_requests.labels(layer="l2", result="error")

    @property
    def name(self) -> str:
        return "tiered"

    async def get(self, key: str) -> bytes | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = [None] * len(keys)
        ask: list[int] = []  # positions L2 must answer
        known: list[bytes] = []  # the L1 header held for each, or b""
        started = time.perf_counter()
        for i, key in enumerate(keys):
            raw = self.l1.lookup(key)
            if raw is None:
                self._l1_results["miss"].inc()
                ask.append(i)
                known.append(b"")
                continue
            header, value = split_record(raw)
            if header_tags(header):
                ask.append(i)
                known.append(header)
                out[i] = value  # tentatively: only if L2 says it is unchanged
            else:
                self._l1_results["hit"].inc()
                out[i] = value
        self._l1_latency.observe(time.perf_counter() - started)
        if not ask:
            return out

        try:
            answers = await self._l2_call(lambda: self.l2.fetch([keys[i] for i in ask], known), self._timeout_s)
        except CacheError:
            for i, header in zip(ask, known, strict=True):
                if header:
                    self._l1_results["error"].inc()
                    out[i] = None
            return out

        for i, header, answer in zip(ask, known, answers, strict=True):
            if isinstance(answer, RedisRecord):
                await self._keep(keys[i], answer.raw, answer.ttl_s)
                out[i] = answer.value
            elif answer is None:
                out[i] = None
            else:
                self._l1_results["hit"].inc()
                continue
            if header:
                self._l1_results["stale"].inc()
                if answer is None:
                    await self.l1.delete(keys[i])
        return out

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None, tags: Sequence[str] = ()) -> None:
        try:
            header = await self._l2_call(lambda: self.l2.set_entry(key, value, ttl_s=ttl_s, tags=tags), self._timeout_s)
        except CacheError:
            await self.l1.delete(key)
            if not tags:
                await self.l1.set(key, _LOCAL_HEADER + b"\n" + value, ttl_s=ttl_s)
            return
        await self.l1.set(key, header + b"\n" + value, ttl_s=ttl_s, tags=tags)

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        await self.l1.delete(*keys)
        await self._l2_call(lambda: self.l2.delete(*keys), self.l2.slow_timeout_s)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        if not tags:
            return 0
        await self.l1.invalidate_tags(tags)
        try:
            return await self._l2_call(lambda: self.l2.invalidate_tags(tags), self.l2.slow_timeout_s)
        except CacheError:
            self._pending_tags.update(dict.fromkeys(tags))
            raise

    async def stats(self) -> CacheStats:
        return await self._l2_call(self.l2.stats, self.l2.slow_timeout_s)

    async def ping(self) -> None:
        await self._l2_call(self.l2.ping, self._timeout_s)

    async def aclose(self) -> None:
        await self.l1.aclose()
        await self.l2.aclose()

    async def _keep(self, key: str, raw: bytes, ttl_s: float | None) -> None:
        header, _ = split_record(raw)
        await self.l1.set(key, raw, ttl_s=ttl_s, tags=header_tags(header))

    async def _l2_call(self, call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """`call` through the breaker and a deadline, after any invalidation L2 missed; CacheError on any failure."""
        try:
            async with self.breaker.guard():
                try:
                    async with asyncio.timeout(timeout_s):
                        await self._flush_pending()
                        return await call()
                except TimeoutError as exc:
                    self._l2_errors.inc()
                    raise CacheError(f"redis cache: no answer within {timeout_s * 1000:.0f} ms") from exc
        except CircuitOpenError as exc:
            self._l2_errors.inc()
            raise CacheError(f"redis cache: {exc.message}") from exc

    async def _flush_pending(self) -> None:
        if not self._pending_tags:
            return
        tags = list(self._pending_tags)
        await self.l2.invalidate_tags(tags)
        for tag in tags:
            self._pending_tags.pop(tag, None)
