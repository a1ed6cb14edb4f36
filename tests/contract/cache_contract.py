"""The Cache contract: what every implementation must do, as plain async checks.

Each check takes a `Subject`: an *empty* cache, and `pass_time(seconds)`, which lets that much
time go by for it (a fake clock moved, a real sleep, or both). The checks use the protocol in
`ragserve.cache.base` only, so the in-process, Redis and tiered caches run the very same
functions: `test_cache_contract.py` feeds every function in `CONTRACT` a fresh subject per
backend; a new backend adds one factory there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ragserve.cache.base import Cache, CacheStats

SHORT_TTL_S = 0.05


@dataclass
class Subject:
    cache: Cache
    pass_time: Callable[[float], Awaitable[None]]


Check = Callable[[Subject], Awaitable[None]]


async def entries(cache: Cache) -> int:
    return (await cache.stats()).entries


# ------------------------------------------------------------------ reads and writes


async def get_returns_what_was_set(s: Subject) -> None:
    cache = s.cache
    assert await cache.get("a") is None
    await cache.set("a", b"alpha")
    assert await cache.get("a") == b"alpha"
    assert await cache.get("A") is None


async def values_are_bytes_kept_exactly(s: Subject) -> None:
    odd = bytes(range(256)) + b"\n\r\n\x00" + "naïve ☃".encode()
    for key, value in [("empty", b""), ("binary", odd), ("newlines", b"\n\n"), ("big", b"x" * 300_000)]:
        await s.cache.set(key, value)
        assert await s.cache.get(key) == value, key


async def keys_and_tags_may_hold_any_text(s: Subject) -> None:
    keys = ["with space", "{braces}", "ünïcødé ☃", "line\nbreak", "colons:a:b", "*?[glob]"]
    for i, key in enumerate(keys):
        await s.cache.set(key, str(i).encode(), tags=[f"tag {key}", "{shared}"])
    assert await s.cache.get_many(keys) == [str(i).encode() for i in range(len(keys))]
    assert await s.cache.invalidate_tags(["tag {braces}"]) == 1
    assert await s.cache.get("{braces}") is None
    assert await s.cache.invalidate_tags(["{shared}"]) == len(keys) - 1
    assert await s.cache.get_many(keys) == [None] * len(keys)


async def get_many_answers_in_order_with_none_for_misses(s: Subject) -> None:
    cache = s.cache
    await cache.set("a", b"1")
    await cache.set("c", b"3", tags=["t"])
    assert await cache.get_many(["c", "b", "a", "c"]) == [b"3", None, b"1", b"3"]
    assert await cache.get_many([]) == []


async def delete_removes_only_the_named_keys(s: Subject) -> None:
    cache = s.cache
    for key in ("a", "b", "c"):
        await cache.set(key, key.encode(), tags=["t"])
    await cache.delete("a", "c", "never-set")
    await cache.delete()
    assert await cache.get_many(["a", "b", "c"]) == [None, b"b", None]
    # A deleted entry no longer counts toward its tags.
    assert await cache.invalidate_tags(["t"]) == 1


async def overwrite_replaces_value_and_tags(s: Subject) -> None:
    cache = s.cache
    await cache.set("k", b"old", tags=["old-tag", "both"])
    await cache.set("k", b"new", tags=["new-tag", "both"])
    assert await cache.get("k") == b"new"
    assert await cache.invalidate_tags(["old-tag"]) == 0
    assert await cache.get("k") == b"new"
    assert await cache.invalidate_tags(["new-tag"]) == 1
    assert await cache.get("k") is None

    await cache.set("u", b"tagged", tags=["x"])
    await cache.set("u", b"untagged")
    assert await cache.invalidate_tags(["x"]) == 0
    assert await cache.get("u") == b"untagged"


async def a_key_can_be_set_again_after_invalidation(s: Subject) -> None:
    cache = s.cache
    await cache.set("k", b"v1", tags=["t"])
    assert await cache.invalidate_tags(["t"]) == 1
    await cache.set("k", b"v2", tags=["t"])
    assert await cache.get("k") == b"v2"
    assert await cache.invalidate_tags(["t"]) == 1
    assert await cache.get("k") is None


# ------------------------------------------------------------------ expiry


async def entries_expire_after_their_ttl(s: Subject) -> None:
    cache = s.cache
    await cache.set("short", b"s", ttl_s=SHORT_TTL_S, tags=["t"])
    await cache.set("short-untagged", b"s", ttl_s=SHORT_TTL_S)
    await cache.set("long", b"l", ttl_s=3600, tags=["t"])
    await cache.set("forever", b"f")
    assert await cache.get_many(["short", "short-untagged", "long", "forever"]) == [b"s", b"s", b"l", b"f"]
    await s.pass_time(SHORT_TTL_S * 3)
    assert await cache.get_many(["short", "short-untagged", "long", "forever"]) == [None, None, b"l", b"f"]
    assert await entries(cache) == 2
    # Only the live entry counts as invalidated.
    assert await cache.invalidate_tags(["t"]) == 1


async def overwrite_resets_the_ttl(s: Subject) -> None:
    cache = s.cache
    await cache.set("k", b"short", ttl_s=SHORT_TTL_S)
    await cache.set("k", b"kept")
    await s.pass_time(SHORT_TTL_S * 3)
    assert await cache.get("k") == b"kept"


async def ttl_must_be_positive(s: Subject) -> None:
    for ttl in (0, -1, float("nan"), float("inf")):
        try:
            await s.cache.set("k", b"v", ttl_s=ttl)
        except ValueError:
            pass
        else:
            raise AssertionError(f"ttl_s={ttl} was accepted")
    assert await s.cache.get("k") is None


# ------------------------------------------------------------------ tags


async def invalidate_evicts_exactly_the_tagged_entries(s: Subject) -> None:
    cache = s.cache
    await cache.set("x", b"x", tags=["a"])
    await cache.set("y", b"y", tags=["a", "b"])
    await cache.set("z", b"z", tags=["b"])
    await cache.set("w", b"w")
    await cache.set("v", b"v", tags=["c"])

    assert await cache.invalidate_tags(["a"]) == 2
    assert await cache.get_many(["x", "y", "z", "w", "v"]) == [None, None, b"z", b"w", b"v"]
    assert await cache.invalidate_tags(["a"]) == 0
    assert await cache.invalidate_tags(["b"]) == 1
    assert await cache.get_many(["z", "w", "v"]) == [None, b"w", b"v"]
    assert await cache.invalidate_tags([]) == 0
    assert await cache.invalidate_tags(["never-used"]) == 0
    assert await cache.get_many(["w", "v"]) == [b"w", b"v"]


async def invalidating_several_tags_counts_each_entry_once(s: Subject) -> None:
    cache = s.cache
    await cache.set("both", b"1", tags=["a", "b"])
    await cache.set("only-a", b"2", tags=["a"])
    await cache.set("only-b", b"3", tags=["b", "b"])
    await cache.set("other", b"4", tags=["c"])
    assert await cache.invalidate_tags(["a", "b", "a"]) == 3
    assert await cache.get_many(["both", "only-a", "only-b", "other"]) == [None, None, None, b"4"]


async def many_entries_share_a_tag(s: Subject) -> None:
    cache = s.cache
    for i in range(50):
        await cache.set(f"k{i}", b"v", tags=["doc:acme:docs:faq.md", f"own-{i}"])
    assert await cache.invalidate_tags(["own-7"]) == 1
    assert await cache.invalidate_tags(["doc:acme:docs:faq.md"]) == 49
    assert await cache.get_many([f"k{i}" for i in range(50)]) == [None] * 50
    assert await entries(cache) == 0


# ------------------------------------------------------------------ stats and health


async def stats_count_live_entries(s: Subject) -> None:
    cache = s.cache
    assert await entries(cache) == 0
    await cache.set("a", b"1", tags=["t"])
    await cache.set("b", b"22", tags=["t"])
    await cache.set("c", b"333")
    assert await entries(cache) == 3
    await cache.set("c", b"3333")
    assert await entries(cache) == 3
    await cache.delete("c")
    assert await entries(cache) == 2
    assert await cache.invalidate_tags(["t"]) == 2
    assert await entries(cache) == 0
    stats = await cache.stats()
    assert isinstance(stats, CacheStats)
    assert stats.bytes is None or stats.bytes == 0


async def name_is_short_and_ping_answers(s: Subject) -> None:
    assert s.cache.name.isidentifier() and len(s.cache.name) <= 32
    await s.cache.ping()


CONTRACT: tuple[Check, ...] = (
    get_returns_what_was_set,
    values_are_bytes_kept_exactly,
    keys_and_tags_may_hold_any_text,
    get_many_answers_in_order_with_none_for_misses,
    delete_removes_only_the_named_keys,
    overwrite_replaces_value_and_tags,
    a_key_can_be_set_again_after_invalidation,
    entries_expire_after_their_ttl,
    overwrite_resets_the_ttl,
    ttl_must_be_positive,
    invalidate_evicts_exactly_the_tagged_entries,
    invalidating_several_tags_counts_each_entry_once,
    many_entries_share_a_tag,
    stats_count_live_entries,
    name_is_short_and_ping_answers,
)
