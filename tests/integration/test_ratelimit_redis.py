"""Redis as the shared rate limiter: one limit across processes, and Redis failing under it.

Every test uses a private redis-server (`redis_server`, or its own `redis_process` when it kills,
freezes or restarts it) and a key prefix of its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from prometheus_client import REGISTRY

from ragserve.errors import ConfigurationError
from ragserve.ratelimit.base import BucketRule, Decision, WindowRule
from ragserve.ratelimit.redis import DEFAULT_TIMEOUT_MS, FAIL_CLOSED_RETRY_S, RedisRateLimiter
from ragserve.resilience.breaker import BreakerState, CircuitBreaker
from ragserve.testing.redis_process import RedisProcess, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMEOUT_MS = 250  # generous: a busy test machine must not turn a slow answer into a fallback
RESET_S = 0.3
WORKER = Path(__file__).with_name("ratelimit_worker.py")


def errors(policy: str) -> float:
    return REGISTRY.get_sample_value("rag_ratelimit_errors_total", {"policy": policy}) or 0.0


def breaker() -> CircuitBreaker:
    return CircuitBreaker("ratelimit:redis", failure_threshold=3, reset_timeout_s=RESET_S, success_threshold=1)


async def timed(call: Callable[[], Awaitable[Decision]]) -> tuple[Decision, float]:
    started = time.perf_counter()
    decision = await call()
    return decision, time.perf_counter() - started


@pytest.fixture
async def raw(redis_server: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the session's server, to look at what the limiter wrote."""
    client = redis.asyncio.Redis.from_url(redis_server)
    yield client
    await client.aclose()


# ------------------------------------------------------------------ one limit for every process

LIMIT, WINDOW_S, SECONDS, PROCESSES, TASKS = 200, 2.0, 2.5, 3, 8


async def start_worker(url: str, prefix: str) -> asyncio.subprocess.Process:
    args = [str(WORKER), url, prefix, str(LIMIT), str(WINDOW_S), str(SECONDS), str(TASKS)]
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )


async def ready(worker: asyncio.subprocess.Process) -> None:
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout=30)
    assert line == b"ready\n", f"worker exited with {await worker.wait()} before it was ready"


async def report(worker: asyncio.subprocess.Process, start: float) -> dict[str, Any]:
    out, _ = await asyncio.wait_for(worker.communicate(f"{start}\n".encode()), timeout=SECONDS + 30)
    assert worker.returncode == 0
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def most_in_any_window(admitted: list[tuple[float, float]]) -> int:
    """The most admissions surely decided within one window: sent no sooner than its start, answered before its end.

    Redis decided each between its sending and its answer, so this never counts one that was
    decided outside the window, whatever the processes' scheduling delays.
    """
    return max(
        (sum(start <= sent and answered < start + WINDOW_S for sent, answered in admitted) for start, _ in admitted),
        default=0,
    )


async def test_one_limit_holds_across_processes(redis_server: str, cache_prefix: str) -> None:
    workers = [await start_worker(redis_server, cache_prefix) for _ in range(PROCESSES)]
    try:
        await asyncio.gather(*(ready(w) for w in workers))
        start = time.time() + 0.2
        reports = await asyncio.gather(*(report(w, start) for w in workers))
    finally:
        for w in workers:
            if w.returncode is None:
                w.kill()
                await w.wait()

    admitted = sorted((sent, answered) for r in reports for sent, answered in r["admitted"])
    opened = admitted[0][0]  # no hit was decided before the first was sent
    first_window = sum(answered < opened + WINDOW_S for _, answered in admitted)
    assert 0.95 * LIMIT <= first_window <= LIMIT
    assert most_in_any_window(admitted) <= LIMIT
    assert 1.9 * LIMIT <= len(admitted) <= 2 * LIMIT  # two windows fit in the run, no more
    assert sum(bool(r["admitted"]) for r in reports) >= 2  # the processes did share the limit
    for r in reports:
        assert r["errors"] == 0
        assert r["refused"] > 100  # every process kept hammering
        assert r["min_retry_after_s"] > 0


# ------------------------------------------------------------------ Redis failing


def fallback(fail_open: bool, limit: int) -> Decision:
    if fail_open:
        return Decision(allowed=True, limit=limit, remaining=limit, reset_s=0.0, retry_after_s=0.0)
    return Decision(
        allowed=False, limit=limit, remaining=0, reset_s=FAIL_CLOSED_RETRY_S, retry_after_s=FAIL_CLOSED_RETRY_S
    )


async def until_redis_answers(limiter: RedisRateLimiter) -> None:
    """Wait (a few seconds at most) until decisions come from Redis: a fresh key allows one hit, then refuses one."""
    probe = WindowRule("probe", limit=1, window_s=60)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        key = uuid.uuid4().hex
        if [(await limiter.hit(key, probe)).allowed for _ in range(2)] == [True, False]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the limiter never got an answer from Redis")


async def load(limiter: RedisRateLimiter, rule: WindowRule, stop: asyncio.Event) -> list[tuple[float, float, Decision]]:
    """Hit until `stop`: (started, seconds taken, decision) for each."""
    seen: list[tuple[float, float, Decision]] = []
    while not stop.is_set():
        started = time.monotonic()
        decision = await limiter.hit("loaded", rule)
        seen.append((started, time.monotonic() - started, decision))
        await asyncio.sleep(0.005)
    return seen


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
async def test_redis_killed_mid_load_then_back_without_a_new_limiter(
    redis_process: RedisProcess, cache_prefix: str, fail_open: bool
) -> None:
    policy = "open" if fail_open else "closed"
    limiter = RedisRateLimiter(
        redis_process.url, timeout_ms=TIMEOUT_MS, breaker=breaker(), fail_open=fail_open, prefix=cache_prefix
    )
    rule = WindowRule("requests", limit=5, window_s=60)
    bucket = BucketRule("tokens", capacity=10, refill_per_s=1)
    try:
        await until_redis_answers(limiter)  # connected, the script loaded
        assert [(await limiter.hit("k", rule)).allowed for _ in range(6)] == [True] * 5 + [False]
        stop = asyncio.Event()
        loaders = [asyncio.create_task(load(limiter, rule, stop)) for _ in range(4)]
        await asyncio.sleep(0.1)

        redis_process.kill()
        killed_at, failed = time.monotonic(), errors(policy)
        await asyncio.sleep(0.2)
        assert limiter.breaker.state is BreakerState.OPEN
        assert await limiter.hit("k", rule) == fallback(fail_open, 5)
        assert await limiter.take("k", bucket, 1) == fallback(fail_open, 10)
        await limiter.debit("k", bucket, 1)  # lost, and counted, but never raised

        redis_process.start()  # the same port, empty
        back_at = time.monotonic()
        await asyncio.sleep(RESET_S + 0.2)
        stop.set()
        seen = [s for results in await asyncio.gather(*loaders) for s in results]

        outage = [(seconds, d) for started, seconds, d in seen if killed_at < started < back_at]
        assert len(outage) >= 10
        assert all(d == fallback(fail_open, 5) for _, d in outage)
        assert max(seconds for seconds, _ in outage) < TIMEOUT_MS / 1000 + 0.1
        assert errors(policy) - failed >= len(outage) + 3

        # Back to Redis: it restarted empty, so a new key counts down from the limit again.
        await until_redis_answers(limiter)
        assert limiter.breaker.snapshot()["state"] == "closed"
        after = [await limiter.hit("after", rule) for _ in range(6)]
        assert [d.remaining for d in after] == [4, 3, 2, 1, 0, 0]
        assert not after[-1].allowed and 59 < after[-1].retry_after_s <= 60
    finally:
        await limiter.aclose()


async def test_a_frozen_redis_costs_no_more_than_the_timeout(redis_process: RedisProcess, cache_prefix: str) -> None:
    limiter = RedisRateLimiter(redis_process.url, prefix=cache_prefix)  # the default timeout
    rule = WindowRule("requests", limit=3, window_s=60)
    try:
        await until_redis_answers(limiter)
        redis_process.pause()
        for _ in range(3):
            decision, seconds = await timed(lambda: limiter.hit("k", rule))
            assert decision == fallback(True, 3)
            assert seconds < DEFAULT_TIMEOUT_MS / 1000 + 0.05
        redis_process.resume()
        await until_redis_answers(limiter)
    finally:
        redis_process.resume()
        await limiter.aclose()


# ------------------------------------------------------------------ layout and settings


async def evalsha_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_one_round_trip_per_decision_and_keys_that_expire(
    redis_server: str, cache_prefix: str, raw: redis.asyncio.Redis
) -> None:
    limiter = RedisRateLimiter(redis_server, timeout_ms=1000, prefix=cache_prefix)
    window = WindowRule("requests", limit=5, window_s=0.5)
    bucket = BucketRule("tokens", capacity=100, refill_per_s=10)
    try:
        await limiter.hit("api:1", window)  # the scripts' first use loads them: not counted below
        await limiter.take("tenant", bucket, 0)
        calls = await evalsha_calls(raw)
        await limiter.hit("api:1", window)
        await limiter.take("tenant", bucket, 30)
        assert await evalsha_calls(raw) - calls == 2

        log = f"{cache_prefix}w:requests:api:1"
        assert await raw.zcard(log) == 2
        assert 0 < await raw.pttl(log) <= 500
        state = f"{cache_prefix}b:tokens:tenant"
        assert 69.9 < float(await raw.hget(state, "level") or 0) <= 70
        assert 2900 < await raw.pttl(state) <= 3000  # gone when full again: a missing bucket is a full one
        await limiter.take("untouched", bucket, 0)
        assert await raw.exists(f"{cache_prefix}b:tokens:untouched") == 0
    finally:
        await limiter.aclose()


async def test_nothing_to_ask_is_a_decision_by_policy(cache_prefix: str) -> None:
    rule = WindowRule("requests", limit=5, window_s=60)
    for url in (f"redis://127.0.0.1:{free_port()}/0", f"redis+cluster://127.0.0.1:{free_port()}"):
        for fail_open in (True, False):
            limiter = RedisRateLimiter(url, timeout_ms=TIMEOUT_MS, fail_open=fail_open, prefix=cache_prefix)
            assert await limiter.hit("k", rule) == fallback(fail_open, 5)
            await limiter.aclose()


async def test_unusable_settings_are_configuration_errors() -> None:
    for url in ("http://localhost:6379", "localhost:6379", ""):
        with pytest.raises(ConfigurationError, match="RAGSERVE_REDIS_URL"):
            RedisRateLimiter(url)
    with pytest.raises(ConfigurationError, match="timeout_ms"):
        RedisRateLimiter("redis://localhost", timeout_ms=0)
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisRateLimiter("redis://localhost", prefix="")
