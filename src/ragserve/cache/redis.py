"""The shared cache: Redis (standalone or cluster), with tags that evict on every replica.

    cache = RedisCache("redis://localhost:6379/0", timeout_ms=20)
    await cache.set("answer:…", payload, ttl_s=3600, tags=["doc:acme:docs:faq.md"])
    await cache.invalidate_tags(["doc:acme:docs:faq.md"])   # -> 1, gone for every replica

`redis://` and `rediss://` (and `unix://`) name one server; `redis+cluster://host:port` (or
`rediss+cluster://`) a cluster, found from that node. Every Redis error and every call that
overruns its budget becomes `CacheError` (`timeout_ms` for lookups, writes and pings; at least
`SLOW_OP_FLOOR_S` for invalidation, delete and stats, which walk sets server-side).

Layout, all under the hash tag `{<prefix>}` so one cache's keys share one cluster slot and its
scripts may touch any of them (a cluster replicates this cache but does not shard it; give
caches different prefixes to spread them):

    {p}v:<key>   the record: a JSON header line `["<stamp>", [tags], [generations]]`, then the value
    {p}t:<tag>   set of keys tagged <tag>; expires no sooner than the last of them
    {p}g:<tag>   the tag's generation, bumped by every invalidation; never expires
    {p}n         sorted set of keys by expiry time (ms): the entry count for `stats`

Each write runs as one Lua script, so an entry, its tag sets and the index never disagree.
The header records the generations of the entry's tags when it was written, and every read
checks them: an invalidation hides what it evicts even if a tag set was lost (to `maxmemory`
eviction, say). Generations start at a random value, so one recreated after a restart or a
flush never matches what a replica remembers; tiered caches rely on it (`fetch`).

`stats` counts through the index rather than DBSIZE or SCAN: O(1) to read and exact for entries
that expire, are deleted or invalidated; an entry Redis itself evicts under `maxmemory` stays
counted until its TTL passes. Its bytes are not known cheaply, so they are reported as None.

Needs Redis 7.0 or later (`PEXPIRE … GT`). Run the cache's Redis with a `volatile-*`
`maxmemory-policy` (or none): generations have no TTL, so they are never evicted then; under
`allkeys-*` an evicted generation costs misses, never staleness.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from ragserve.cache import redis_scripts as scripts
from ragserve.cache.base import CacheStats
from ragserve.errors import CacheError, ConfigurationError
from ragserve.observability.metrics import CACHE_LAYERS, get_metrics

SLOW_OP_FLOOR_S = 2.0
# What redis-py raises: RedisError, except cluster discovery; OSError for sockets it does not wrap.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)
_SCHEMES = ("redis://", "rediss://", "unix://")
_CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = _Unchanged.UNCHANGED
"""`fetch`'s answer for a key whose record is still the one the caller holds."""


@dataclass(frozen=True, slots=True)
class RedisRecord:
    """An entry as Redis stores it: `raw` is the header line and the value; `ttl_s` what is left of its TTL."""

    raw: bytes
    ttl_s: float | None

    @property
    def header(self) -> bytes:
        return split_record(self.raw)[0]

    @property
    def value(self) -> bytes:
        return split_record(self.raw)[1]


def split_record(raw: bytes) -> tuple[bytes, bytes]:
    """(header, value) of a stored record."""
    header, sep, value = raw.partition(b"\n")
    if not sep:
        raise CacheError("corrupt cache record: no header line")
    return header, value


def header_tags(header: bytes) -> list[str]:
    """The tags a record header names; [] for an untagged entry."""
    if b"," not in header:  # untagged headers are `["<stamp>"]`: skip the parse on the hot path
        return []
    try:
        parsed = json.loads(header)
        return [str(t) for t in parsed[1]]
    except (ValueError, IndexError, TypeError) as exc:
        raise CacheError(f"corrupt cache record header: {exc}") from exc


class RedisCache:
    def __init__(self, url: str, *, timeout_ms: float, prefix: str = "ragserve:", layer: str = "l2") -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(f"cache prefix must be non-empty and without braces, got {prefix!r}")
        if not timeout_ms > 0:
            raise ConfigurationError(f"cache timeout_ms must be > 0, got {timeout_ms}")
        if layer not in CACHE_LAYERS:
            raise ValueError(f"layer must be one of {sorted(CACHE_LAYERS)}, got {layer!r}")
        self.timeout_s = timeout_ms / 1000
        self.slow_timeout_s = max(self.timeout_s, SLOW_OP_FLOOR_S)
        self._base = "{" + prefix + "}"
        self._client = connect(url, self.timeout_s, self.slow_timeout_s)
        self._fetch = self._client.register_script(scripts.FETCH)
        self._set = self._client.register_script(scripts.SET)
        self._delete = self._client.register_script(scripts.DELETE)
        self._invalidate = self._client.register_script(scripts.INVALIDATE)
        self._count = self._client.register_script(scripts.COUNT)

        metrics = get_metrics()
        self._hits = metrics.cache_requests.labels(layer=layer, result="hit")
        self._misses = metrics.cache_requests.labels(layer=layer, result="miss")
        self._errors = metrics.cache_requests.labels(layer=layer, result="error")
        self._latency = metrics.cache_latency.labels(layer=layer)

    @property
    def name(self) -> str:
        return "redis"

    async def get(self, key: str) -> bytes | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        records = await self.fetch(keys)
        return [r.value if isinstance(r, RedisRecord) else None for r in records]

    async def fetch(
        self, keys: Sequence[str], known: Sequence[bytes] | None = None
    ) -> list[RedisRecord | Literal[_Unchanged.UNCHANGED] | None]:
        """Records of `keys`, in one round trip, never one whose tags were invalidated since it was written.

        `known[i]` is the header of a copy the caller already holds for `keys[i]` (or b""): the answer
        for it is `UNCHANGED` while that copy is still current, so its value does not travel again.
        """
        if not keys:
            return []
        known = known if known is not None else [b""] * len(keys)
        started = time.perf_counter()
        reply = await self._run(
            lambda: self._fetch(keys=[self._vkey(k) for k in keys], args=[self._base, *known]),
            self.timeout_s,
            errors=len(keys),
        )
        self._latency.observe(time.perf_counter() - started)
        out: list[RedisRecord | Literal[_Unchanged.UNCHANGED] | None] = []
        for i in range(len(keys)):
            found, ttl_ms = reply[2 * i], reply[2 * i + 1]
            if found == 1:
                out.append(UNCHANGED)
            elif isinstance(found, bytes):
                self._hits.inc()
                out.append(RedisRecord(found, ttl_ms / 1000 if ttl_ms > 0 else None))
            else:
                self._misses.inc()
                out.append(None)
        return out

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None, tags: Sequence[str] = ()) -> None:
        await self.set_entry(key, value, ttl_s=ttl_s, tags=tags)

    async def set_entry(self, key: str, value: bytes, *, ttl_s: float | None = None, tags: Sequence[str] = ()) -> bytes:
        """`set`, returning the header written: what a tiered cache keeps to check its copy with `fetch`."""
        if ttl_s is not None and not (ttl_s > 0 and math.isfinite(ttl_s)):
            raise ValueError(f"ttl_s must be a positive number of seconds or None, got {ttl_s}")
        unique = list(dict.fromkeys(tags))
        ttl_ms = 0 if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        keys = [self._vkey(key), *(self._tkey(t) for t in unique), *(self._gkey(t) for t in unique)]
        args: list[str | bytes | int] = [self._base, ttl_ms, secrets.token_hex(8), _seed(), value, *unique]
        header: bytes = await self._run(lambda: self._set(keys=keys, args=args), self.timeout_s)
        return header

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._run(lambda: self._delete(keys=[self._vkey(k) for k in keys], args=[self._base]))

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        unique = list(dict.fromkeys(tags))
        if not unique:
            return 0
        keys = [*(self._tkey(t) for t in unique), *(self._gkey(t) for t in unique)]
        removed: int = await self._run(lambda: self._invalidate(keys=keys, args=[self._base, _seed(), *unique]))
        return removed

    async def generations(self, tags: Sequence[str]) -> list[int]:
        """The current generation of each tag (0 when it has none yet); it changes with every invalidation."""
        if not tags:
            return []
        values = await self._run(lambda: self._client.mget([self._gkey(t) for t in tags]), self.timeout_s)
        return [int(v) if v is not None else 0 for v in values]

    async def stats(self) -> CacheStats:
        entries: int = await self._run(lambda: self._count(keys=[self._base + "n"], args=[self._base]))
        return CacheStats(entries=entries, bytes=None)

    async def ping(self) -> None:
        await self._run(self._client.ping, self.timeout_s)

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except REDIS_ERRORS as exc:
            raise CacheError(f"redis cache: closing failed: {exc}") from exc

    def _vkey(self, key: str) -> str:
        return f"{self._base}v:{key}"

    def _tkey(self, tag: str) -> str:
        return f"{self._base}t:{tag}"

    def _gkey(self, tag: str) -> str:
        return f"{self._base}g:{tag}"

    async def _run(self, call: Callable[[], Awaitable[Any]], timeout_s: float | None = None, *, errors: int = 1) -> Any:
        budget = self.slow_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(budget):
                return await call()
        except TimeoutError as exc:
            self._errors.inc(errors)
            raise CacheError(f"redis cache: no answer within {budget * 1000:.0f} ms") from exc
        except REDIS_ERRORS as exc:
            self._errors.inc(errors)
            raise CacheError(f"redis cache: {type(exc).__name__}: {exc}") from exc


def _seed() -> int:
    """Where a new generation starts: random, so a recreated one never repeats what a replica remembers."""
    return secrets.randbits(48) + 1


def connect(url: str, timeout_s: float, read_timeout_s: float) -> Redis | RedisCluster:
    # One immediate retry on a broken connection: a pooled socket to a restarted server fails once, then reconnects.
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": read_timeout_s,
        "retry": Retry(NoBackoff(), 1, (RedisConnectionError,)),
    }
    try:
        for scheme, plain in _CLUSTER_SCHEMES.items():
            if url.startswith(scheme):
                return RedisCluster.from_url(plain + url[len(scheme) :], **options)
        if url.startswith(_SCHEMES):
            return Redis.from_url(url, **options)
    except (ValueError, *REDIS_ERRORS) as exc:
        raise ConfigurationError(f"RAGSERVE_REDIS_URL is not usable: {exc}") from exc
    raise ConfigurationError(
        "RAGSERVE_REDIS_URL must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
    )
