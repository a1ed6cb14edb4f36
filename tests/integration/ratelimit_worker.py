"""One process of the cross-process test in `test_ratelimit_redis.py`: hammer one key through a limiter of its own.

    python ratelimit_worker.py <redis url> <prefix> <limit> <window s> <seconds> <tasks>

Prints "ready" once its connections are open and the scripts loaded, then reads a start time
(epoch seconds) from stdin, so that every process begins at the same moment whatever its start-up
took. From then on `tasks` asyncio tasks hit the key as fast as they can for `seconds`; at the end
it prints one JSON object: for each admitted hit, when it was sent and when its answer came back
(epoch seconds: Redis decided in between), how many were refused, the least Retry-After among
them, and how many checks failed. The limiter fails
closed, so a failed check could only hide an over-admission, never cause one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from prometheus_client import REGISTRY

from ragserve.ratelimit.base import WindowRule
from ragserve.ratelimit.redis import RedisRateLimiter

KEY = "shared"


async def hammer(
    limiter: RedisRateLimiter, rule: WindowRule, until: float
) -> tuple[list[tuple[float, float]], list[float]]:
    """((sent, answered) of each admitted hit, Retry-After of each refusal)."""
    admitted: list[tuple[float, float]] = []
    refused: list[float] = []
    while (sent := time.time()) < until:
        decision = await limiter.hit(KEY, rule)
        if decision.allowed:
            admitted.append((sent, time.time()))
        else:
            refused.append(decision.retry_after_s)
    return admitted, refused


async def main(url: str, prefix: str, limit: int, window_s: float, seconds: float, tasks: int) -> None:
    limiter = RedisRateLimiter(url, timeout_ms=1000, fail_open=False, prefix=prefix)
    rule = WindowRule("global", limit=limit, window_s=window_s)
    await asyncio.gather(*(limiter.hit("warm-up", rule) for _ in range(tasks)))  # one connection per task
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, start - time.time()))
    results = await asyncio.gather(*(hammer(limiter, rule, start + seconds) for _ in range(tasks)))
    await limiter.aclose()
    refusals = [r for _, refused in results for r in refused]
    report = {
        "admitted": sorted(t for admitted, _ in results for t in admitted),
        "refused": len(refusals),
        "min_retry_after_s": min(refusals, default=None),
        "errors": REGISTRY.get_sample_value("rag_ratelimit_errors_total", {"policy": "closed"}) or 0.0,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    url, prefix, limit, window_s, seconds, tasks = sys.argv[1:]
    asyncio.run(main(url, prefix, int(limit), float(window_s), float(seconds), int(tasks)))
