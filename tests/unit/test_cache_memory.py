"""MemoryCache bounds: entries, bytes, TTL and tags, with every eviction counted by reason."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from ragserve.cache.base import CacheStats
from ragserve.cache.memory import MemoryCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def evictions(reason: str) -> float:
    return REGISTRY.get_sample_value("rag_cache_evictions_total", {"reason": reason}) or 0.0


def lookups(result: str, layer: str = "l1") -> float:
    return REGISTRY.get_sample_value("rag_cache_requests_total", {"layer": layer, "result": result}) or 0.0


class Counted:
    """Eviction and lookup counters, as deltas from when it was made."""

    def __init__(self) -> None:
        self.start = {r: evictions(r) for r in ("lru", "ttl", "tag", "size")}

    def __getitem__(self, reason: str) -> float:
        return evictions(reason) - self.start[reason]


async def test_least_recently_used_goes_first_when_over_max_entries() -> None:
    cache = MemoryCache(max_entries=3, max_bytes=10**6)
    counted = Counted()
    for key in "abc":
        await cache.set(key, b"v")
    assert await cache.get("a") == b"v"  # now b is the least recently used
    await cache.set("d", b"v")
    assert await cache.get_many(["a", "b", "c", "d"]) == [b"v", None, b"v", b"v"]
    await cache.set("c", b"again")  # an overwrite is not an eviction
    assert (await cache.stats()).entries == 3
    assert (counted["lru"], counted["size"], counted["ttl"]) == (1, 0, 0)


async def test_bytes_bound_counts_keys_and_values() -> None:
    cache = MemoryCache(max_entries=100, max_bytes=30)
    counted = Counted()
    await cache.set("k1", b"x" * 8)  # 10 bytes
    await cache.set("k2", b"x" * 8)
    await cache.set("ü3", b"x" * 7)  # "ü" is two bytes in UTF-8: 10 bytes
    assert await cache.stats() == CacheStats(entries=3, bytes=30)
    await cache.set("k4", b"x")  # 3 more bytes: k1 has to go
    assert await cache.get("k1") is None
    assert await cache.stats() == CacheStats(entries=3, bytes=23)
    await cache.set("k5", b"x" * 18)  # 20 bytes: k2 and ü3 go
    assert await cache.get_many(["k2", "ü3", "k4", "k5"]) == [None, None, b"x", b"x" * 18]
    assert await cache.stats() == CacheStats(entries=2, bytes=23)
    assert (counted["size"], counted["lru"]) == (3, 0)


async def test_a_value_larger_than_the_whole_cache_is_refused_and_replaces_the_old_one() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=100)
    counted = Counted()
    await cache.set("small", b"old", tags=["t"])
    await cache.set("other", b"kept")
    await cache.set("small", b"x" * 200, tags=["t"])
    assert await cache.get("small") is None  # never the value it was meant to replace
    assert await cache.get("other") == b"kept"
    assert await cache.invalidate_tags(["t"]) == 0
    assert counted["size"] == 1


async def test_expired_entries_are_dropped_and_counted() -> None:
    clock = FakeClock()
    cache = MemoryCache(max_entries=10, max_bytes=10**6, clock=clock)
    counted = Counted()
    await cache.set("read-after-expiry", b"v", ttl_s=10)
    await cache.set("swept-by-stats", b"v", ttl_s=10, tags=["t"])
    await cache.set("kept", b"v", ttl_s=20)
    clock.now = 9.999
    assert await cache.get("read-after-expiry") == b"v"
    clock.now = 10
    assert await cache.get("read-after-expiry") is None
    assert counted["ttl"] == 1
    assert await cache.stats() == CacheStats(entries=1, bytes=len("kept") + 1)
    assert counted["ttl"] == 2
    assert await cache.invalidate_tags(["t"]) == 0


async def test_expired_entries_at_the_lru_end_are_counted_as_ttl() -> None:
    clock = FakeClock()
    cache = MemoryCache(max_entries=2, max_bytes=10**6, clock=clock)
    counted = Counted()
    await cache.set("old", b"v", ttl_s=1)
    await cache.set("b", b"v")
    clock.now = 5
    await cache.set("c", b"v")
    assert (counted["ttl"], counted["lru"]) == (1, 0)


async def test_tag_index_follows_evictions_and_overwrites() -> None:
    cache = MemoryCache(max_entries=2, max_bytes=10**6)
    counted = Counted()
    await cache.set("a", b"1", tags=["t", "u"])
    await cache.set("b", b"2", tags=["t"])
    await cache.set("c", b"3", tags=["u"])  # evicts a
    assert await cache.invalidate_tags(["u"]) == 1  # only c: a is gone
    await cache.set("b", b"2", tags=["v"])
    assert await cache.invalidate_tags(["t"]) == 0
    assert await cache.invalidate_tags(["v"]) == 1
    assert (counted["lru"], counted["tag"]) == (1, 2)
    assert await cache.stats() == CacheStats(entries=0, bytes=0)
    assert cache._tags == {}  # no tag keeps a dead key alive


async def test_zero_bounds_turn_the_cache_off() -> None:
    for cache in (MemoryCache(max_entries=0, max_bytes=100), MemoryCache(max_entries=10, max_bytes=0)):
        await cache.set("k", b"v", tags=["t"])
        assert await cache.get("k") is None
        assert await cache.stats() == CacheStats(entries=0, bytes=0)


async def test_lookups_are_counted_per_key_under_the_layer_label() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=10**6, layer="embedding")
    hits, misses = lookups("hit", "embedding"), lookups("miss", "embedding")
    await cache.set("k", b"v")
    await cache.get("k")
    await cache.get_many(["k", "x", "y"])
    cache.lookup("k")  # for wrappers: not counted
    assert (lookups("hit", "embedding") - hits, lookups("miss", "embedding") - misses) == (2, 2)


def test_bad_bounds_and_layers_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=-1, max_bytes=10)
    with pytest.raises(ValueError, match="layer"):
        MemoryCache(max_entries=1, max_bytes=10, layer="user-42")
