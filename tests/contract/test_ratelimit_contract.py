"""Runs the RateLimiter contract against every implementation; then what is particular to the in-process one.

The Redis limiter runs against a private redis-server (`redis_server`), never a fake: the point
is to check the Lua scripts as Redis runs them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ratelimit_contract import CONTRACT, Check, Subject

from ragserve.ratelimit import build_rate_limiter
from ragserve.ratelimit.base import BucketRule, Decision, WindowRule, most_restrictive
from ragserve.ratelimit.memory import MemoryRateLimiter
from ragserve.ratelimit.redis import RedisRateLimiter

# Generous next to a local round trip: the contract is about behaviour, not speed.
TIMEOUT_MS = 2000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def memory(redis_url: str, prefix: str) -> Subject:
    clock = FakeClock()

    async def pass_time(seconds: float) -> None:
        clock.now += seconds

    return Subject(MemoryRateLimiter(clock=clock), pass_time)


def redis(redis_url: str, prefix: str) -> Subject:
    limiter = RedisRateLimiter(redis_url, timeout_ms=TIMEOUT_MS, fail_open=False, prefix=prefix)
    return Subject(limiter, asyncio.sleep)


FACTORIES: dict[str, Callable[[str, str], Subject]] = {"memory": memory, "redis": redis}


@pytest.fixture(params=sorted(FACTORIES))
async def subject(request: pytest.FixtureRequest, cache_prefix: str) -> AsyncIterator[Subject]:
    # Only the Redis factory starts (or skips for want of) a redis-server.
    url = "" if request.param == "memory" else request.getfixturevalue("redis_server")
    built = FACTORIES[request.param](url, cache_prefix)
    yield built
    await built.limiter.aclose()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__)
async def test_ratelimit_contract(subject: Subject, check: Check) -> None:
    await check(subject)


def test_every_check_is_in_the_contract() -> None:
    import ratelimit_contract

    checks: list[Callable[..., Awaitable[None]]] = [
        f for f in vars(ratelimit_contract).values() if inspect.iscoroutinefunction(f)
    ]
    assert set(checks) == set(CONTRACT)


# ------------------------------------------------------------------ rules and decisions


@pytest.mark.parametrize(
    "make",
    [
        lambda: WindowRule("requests", limit=0, window_s=1),
        lambda: WindowRule("requests", limit=1, window_s=0),
        lambda: WindowRule("requests", limit=1, window_s=float("inf")),
        lambda: WindowRule("has:colon", limit=1, window_s=1),
        lambda: WindowRule("", limit=1, window_s=1),
        lambda: BucketRule("tokens", capacity=0, refill_per_s=1),
        lambda: BucketRule("tokens", capacity=1, refill_per_s=float("nan")),
        lambda: BucketRule("tenant acme", capacity=1, refill_per_s=1),
    ],
)
def test_rules_refuse_values_that_mean_nothing(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_most_restrictive_reports_the_longest_refusal_else_the_least_remaining() -> None:
    roomy = Decision(allowed=True, limit=100, remaining=90, reset_s=5, retry_after_s=0)
    tight = Decision(allowed=True, limit=10, remaining=1, reset_s=50, retry_after_s=0)
    soon = Decision(allowed=False, limit=100, remaining=0, reset_s=5, retry_after_s=1)
    late = Decision(allowed=False, limit=10, remaining=0, reset_s=9, retry_after_s=8)
    assert most_restrictive([roomy, tight]) is tight
    assert most_restrictive([roomy, soon, tight, late]) is late
    assert most_restrictive(iter([roomy])) is roomy
    with pytest.raises(ValueError):
        most_restrictive([])


async def test_the_factory_uses_redis_only_when_given_a_url() -> None:
    plain = build_rate_limiter(None, timeout_ms=20, fail_open=True, breaker=None)
    shared = build_rate_limiter("redis://127.0.0.1:1/0", timeout_ms=20, fail_open=False, breaker=None)
    assert isinstance(plain, MemoryRateLimiter)
    assert isinstance(shared, RedisRateLimiter) and not shared.fail_open
    await shared.aclose()


# ------------------------------------------------------------------ the in-process limiter's memory


async def test_idle_keys_are_dropped() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    window = WindowRule("requests", limit=5, window_s=1)
    bucket = BucketRule("tokens", capacity=10, refill_per_s=10)
    for i in range(100):
        await limiter.hit(f"w{i}", window)
        await limiter.debit(f"b{i}", bucket, 5)  # full again in 0.5 s
    await limiter.take("checked", bucket, 0)  # a full bucket: nothing worth keeping
    assert len(limiter) <= 201
    clock.now += 1.0
    await limiter.hit("late", window)
    assert len(limiter) == 1


async def test_beyond_max_keys_the_least_recently_used_go_first() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(max_keys=3, clock=clock)
    rule = WindowRule("requests", limit=1, window_s=60)
    for key in ("a", "b", "c"):
        assert (await limiter.hit(key, rule)).allowed
    assert not (await limiter.hit("a", rule)).allowed  # "a" is now the most recently used
    assert (await limiter.hit("d", rule)).allowed  # evicts "b"
    assert len(limiter) == 3
    assert not (await limiter.hit("a", rule)).allowed
    assert (await limiter.hit("b", rule)).allowed  # forgotten: admitted early, never refused wrongly
