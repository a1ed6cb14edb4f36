"""Runs the Cache contract against every implementation; a new backend adds a factory."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from cache_contract import CONTRACT, Check, Subject

from ragserve.cache.memory import MemoryCache
from ragserve.cache.redis import RedisCache
from ragserve.cache.tiered import TieredCache
from ragserve.resilience.breaker import CircuitBreaker

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

    return Subject(MemoryCache(1000, 10 * 2**20, clock=clock), pass_time)


def redis(redis_url: str, prefix: str) -> Subject:
    async def pass_time(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return Subject(RedisCache(redis_url, timeout_ms=TIMEOUT_MS, prefix=prefix), pass_time)


def tiered(redis_url: str, prefix: str) -> Subject:
    clock = FakeClock()

    async def pass_time(seconds: float) -> None:
        clock.now += seconds
        await asyncio.sleep(seconds)

    cache = TieredCache(
        MemoryCache(1000, 10 * 2**20, clock=clock),
        RedisCache(redis_url, timeout_ms=TIMEOUT_MS, prefix=prefix),
        breaker=CircuitBreaker("cache:contract"),
    )
    return Subject(cache, pass_time)


FACTORIES: dict[str, Callable[[str, str], Subject]] = {"memory": memory, "redis": redis, "tiered": tiered}


@pytest.fixture(params=sorted(FACTORIES))
async def subject(request: pytest.FixtureRequest, cache_prefix: str) -> AsyncIterator[Subject]:
    # Only the Redis-backed factories start (or skip for want of) a redis-server.
    url = "" if request.param == "memory" else request.getfixturevalue("redis_server")
    built = FACTORIES[request.param](url, cache_prefix)
    yield built
    await built.cache.aclose()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__)
async def test_cache_contract(subject: Subject, check: Check) -> None:
    await check(subject)


def test_every_check_is_in_the_contract() -> None:
    import cache_contract

    checks: list[Callable[..., Awaitable[None]]] = [
        f for name, f in vars(cache_contract).items() if inspect.iscoroutinefunction(f) and name != "entries"
    ]
    assert set(checks) == set(CONTRACT)
