"""Redis as the shared cache: two replicas' tiered caches over one real Redis, and Redis failing under them.

Every test uses a private redis-server (`redis_server`, or its own `redis_process` when it kills,
freezes or restarts it) and a key prefix of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio
import redis.utils
from prometheus_client import REGISTRY

from ragserve.cache.memory import MemoryCache
from ragserve.cache.redis import RedisCache
from ragserve.cache.tiered import TieredCache
from ragserve.errors import CacheError, ConfigurationError
from ragserve.resilience.breaker import BreakerState, CircuitBreaker
from ragserve.testing.redis_process import RedisProcess, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMEOUT_MS = 100
RESET_S = 0.3


def lookups(layer: str, result: str) -> float:
    return REGISTRY.get_sample_value("rag_cache_requests_total", {"layer": layer, "result": result}) or 0.0


def replica(url: str, prefix: str, *, breaker: CircuitBreaker | None = None) -> TieredCache:
    return TieredCache(
        MemoryCache(1000, 2**20),
        RedisCache(url, timeout_ms=TIMEOUT_MS, prefix=prefix),
        breaker=breaker or CircuitBreaker("cache:redis", failure_threshold=3, reset_timeout_s=RESET_S),
    )


@pytest.fixture
async def raw(redis_server: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the session's server, to look at what the caches wrote."""
    client = redis.asyncio.Redis.from_url(redis_server)
    yield client
    await client.aclose()


async def evalsha_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# ------------------------------------------------------------------ two replicas


async def test_an_invalidation_on_one_replica_is_seen_by_the_next_read_on_another(
    redis_server: str, cache_prefix: str, raw: redis.asyncio.Redis
) -> None:
    a, b = replica(redis_server, cache_prefix), replica(redis_server, cache_prefix)
    try:
        await a.set("answer", b"old answer", ttl_s=60, tags=["doc:acme:docs:faq.md"])
        await a.get("not-cached")  # the scripts' first use loads them: not counted below
        hits = lookups("l1", "hit")
        calls = await evalsha_calls(raw)
        assert await a.get("answer") == b"old answer"
        assert lookups("l1", "hit") - hits == 1
        assert await evalsha_calls(raw) - calls == 1  # the check is one round trip

        assert await b.invalidate_tags(["doc:acme:docs:faq.md"]) == 1
        stale = lookups("l1", "stale")
        assert await a.get("answer") is None  # no sleep: the generation check sees it at once
        assert lookups("l1", "stale") - stale == 1
        assert a.l1.lookup("answer") is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_overwrite_or_delete_on_one_replica_is_seen_by_another(redis_server: str, cache_prefix: str) -> None:
    a, b = replica(redis_server, cache_prefix), replica(redis_server, cache_prefix)
    try:
        await a.set("k", b"from a", tags=["t"])
        await a.set("gone", b"from a", tags=["t"])
        assert await a.get_many(["k", "gone"]) == [b"from a", b"from a"]
        assert await b.get("k") == b"from a"  # filled from L2 into b's L1

        await b.set("k", b"from b", tags=["t"])
        await b.delete("gone")
        assert await a.get_many(["k", "gone"]) == [b"from b", None]
        assert await a.get("k") == b"from b"  # and a's L1 now holds b's write
        assert await b.get("k") == b"from b"
    finally:
        await a.aclose()
        await b.aclose()


async def test_untagged_entries_are_served_from_l1_without_a_round_trip(
    redis_server: str, cache_prefix: str, raw: redis.asyncio.Redis
) -> None:
    a = replica(redis_server, cache_prefix)
    try:
        await a.set("embedding:model:text", b"\x00\x01")
        calls = await evalsha_calls(raw)
        assert await a.get("embedding:model:text") == b"\x00\x01"
        assert await evalsha_calls(raw) == calls
    finally:
        await a.aclose()


async def test_redis_layout_expires_tag_sets_with_their_entries(
    redis_server: str, cache_prefix: str, raw: redis.asyncio.Redis
) -> None:
    cache = RedisCache(redis_server, timeout_ms=TIMEOUT_MS, prefix=cache_prefix)
    base = "{" + cache_prefix + "}"
    try:
        await cache.set("short", b"v", ttl_s=5, tags=["t"])
        await cache.set("long", b"v", ttl_s=50, tags=["t"])
        await cache.set("shorter", b"v", ttl_s=1, tags=["t"])
        assert 45_000 < await raw.pttl(base + "t:t") <= 50_000  # never shortened by a shorter entry
        await cache.set("forever", b"v", tags=["t"])
        assert await raw.pttl(base + "t:t") == -1
        assert await raw.pttl(base + "g:t") == -1  # generations outlive every entry

        assert await cache.generations(["t", "unused"]) == [int(await raw.get(base + "g:t") or -1), 0]
        before = (await cache.generations(["t"]))[0]
        await cache.invalidate_tags(["t"])
        assert await cache.generations(["t"]) == [before + 1]
        assert await raw.exists(base + "t:t") == 0
        assert await raw.zcard(base + "n") == 0
    finally:
        await cache.aclose()


async def test_a_lost_generation_is_never_trusted(
    redis_server: str, cache_prefix: str, raw: redis.asyncio.Redis
) -> None:
    # Generations are what make a replica's L1 copy trustworthy: one that Redis lost (evicted,
    # or flushed) must read as "changed", and one made afresh must not repeat an old value.
    a = replica(redis_server, cache_prefix)
    generation = "{" + cache_prefix + "}g:t"
    try:
        await a.set("lost", b"v", tags=["t"])
        await raw.delete(generation)
        assert await a.get("lost") is None

        await a.set("recreated", b"v", tags=["t"])
        await raw.delete(generation)
        await a.l2.set("elsewhere", b"w", tags=["t"])  # another write makes the generation again
        assert await a.get("recreated") is None
        assert await a.get("elsewhere") == b"w"
    finally:
        await a.aclose()


# ------------------------------------------------------------------ failing open


async def timed(call: Callable[[], Awaitable[object]]) -> tuple[object, float]:
    started = time.perf_counter()
    result = await call()
    return result, time.perf_counter() - started


async def test_redis_killed_fails_open_then_recovers_without_a_restart(
    redis_process: RedisProcess, cache_prefix: str
) -> None:
    breaker = CircuitBreaker("cache:redis", failure_threshold=3, reset_timeout_s=RESET_S, success_threshold=1)
    cache = replica(redis_process.url, cache_prefix, breaker=breaker)
    try:
        await cache.set("tagged", b"t", tags=["doc"])
        await cache.set("untagged", b"u")
        assert await cache.get_many(["tagged", "untagged"]) == [b"t", b"u"]

        redis_process.kill()
        errors = lookups("l2", "error")
        result, seconds = await timed(lambda: cache.get("tagged"))
        assert result is None  # never served from L1 unverified
        assert seconds < TIMEOUT_MS / 1000 + 0.2
        assert await cache.get("untagged") == b"u"  # needs no check
        await cache.set("new", b"n", tags=["doc"])  # does not raise
        with pytest.raises(CacheError):
            await cache.invalidate_tags(["doc"])
        assert breaker.state is BreakerState.OPEN
        assert lookups("l2", "error") - errors >= 3
        result, seconds = await timed(lambda: cache.get("new"))
        assert result is None and seconds < 0.05  # the open breaker fails fast
        with pytest.raises(CacheError):
            await cache.ping()

        redis_process.start()  # the same port, empty
        await asyncio.sleep(RESET_S + 0.05)
        assert await cache.get("tagged") is None  # Redis lost it: the L1 copy is not trusted
        assert breaker.snapshot()["state"] == "closed"
        await cache.set("after", b"a", tags=["doc"])
        assert await cache.get("after") == b"a"
        assert await cache.invalidate_tags(["doc"]) == 1
        await cache.ping()
    finally:
        await cache.aclose()


async def test_a_frozen_redis_times_out_within_the_budget(redis_process: RedisProcess, cache_prefix: str) -> None:
    cache = replica(redis_process.url, cache_prefix)
    plain = RedisCache(redis_process.url, timeout_ms=TIMEOUT_MS, prefix=cache_prefix)
    try:
        await cache.set("k", b"v", tags=["t"])
        assert await plain.get("k") == b"v"
        redis_process.pause()
        result, seconds = await timed(lambda: cache.get("k"))
        assert result is None
        assert TIMEOUT_MS / 1000 * 0.9 < seconds < TIMEOUT_MS / 1000 + 0.2
        await cache.set("k2", b"v2", tags=["t"])
        with pytest.raises(CacheError, match="no answer within"):
            await plain.get("k")
        redis_process.resume()
        await asyncio.sleep(RESET_S + 0.05)
        assert await plain.get("k") == b"v"  # the pool recovers from the cancelled calls
        assert await cache.get("k") == b"v"
    finally:
        redis_process.resume()
        await cache.aclose()
        await plain.aclose()


async def test_an_invalidation_that_failed_is_applied_before_the_next_read(
    redis_server: str, cache_prefix: str
) -> None:
    breaker = CircuitBreaker("cache:redis", failure_threshold=1, reset_timeout_s=RESET_S, success_threshold=1)
    a, b = replica(redis_server, cache_prefix, breaker=breaker), replica(redis_server, cache_prefix)
    try:
        await a.set("k", b"v", tags=["doc"])
        breaker.record_failure(CacheError("as if Redis had failed"))
        with pytest.raises(CacheError, match="circuit breaker is open"):
            await a.invalidate_tags(["doc"])  # nothing reached Redis
        assert await b.get("k") == b"v"
        await asyncio.sleep(RESET_S + 0.05)
        assert await a.get("k") is None  # the remembered invalidation went first
        assert await b.get("k") is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_errors_never_leak_as_redis_exceptions(redis_server: str, cache_prefix: str) -> None:
    nobody = RedisCache(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=TIMEOUT_MS, prefix=cache_prefix)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: nobody.get("k"),
        lambda: nobody.get_many(["k", "l"]),
        lambda: nobody.set("k", b"v", tags=["t"]),
        lambda: nobody.delete("k"),
        lambda: nobody.invalidate_tags(["t"]),
        lambda: nobody.generations(["t"]),
        nobody.stats,
        nobody.ping,
    ]
    for call in calls:
        with pytest.raises(CacheError) as caught:
            await call()
        assert isinstance(caught.value.__cause__, (redis.exceptions.RedisError, OSError))
    await nobody.aclose()

    # A server that answers with an error (here: a foreign value of the wrong type under our key).
    cache = RedisCache(redis_server, timeout_ms=TIMEOUT_MS, prefix=cache_prefix)
    client = redis.asyncio.Redis.from_url(redis_server)
    try:
        await client.sadd("{" + cache_prefix + "}v:k", "x")
        with pytest.raises(CacheError, match="ResponseError"):
            await cache.get("k")
    finally:
        await client.aclose()
        await cache.aclose()


async def test_a_cluster_url_is_understood_and_fails_as_a_cache_error(cache_prefix: str) -> None:
    cache = RedisCache(f"redis+cluster://127.0.0.1:{free_port()}", timeout_ms=TIMEOUT_MS, prefix=cache_prefix)
    with pytest.raises(CacheError):
        await cache.ping()
    await cache.aclose()


async def test_unusable_settings_are_configuration_errors() -> None:
    for url in ("http://localhost:6379", "localhost:6379", ""):
        with pytest.raises(ConfigurationError, match="RAGSERVE_REDIS_URL"):
            RedisCache(url, timeout_ms=TIMEOUT_MS)
    for prefix in ("", "a{b}", "}"):
        with pytest.raises(ConfigurationError, match="prefix"):
            RedisCache("redis://localhost", timeout_ms=TIMEOUT_MS, prefix=prefix)


async def test_hiredis_parses_the_replies() -> None:
    assert redis.utils.HIREDIS_AVAILABLE
