"""Rate limits for the HTTP layer: requests per sliding window and LLM tokens per token bucket, per key.

One small protocol (`base.RateLimiter`) with an in-process implementation, exact for a single
process, and a Redis one that every replica shares, so that a limit means the same with one
replica or ten. `build_rate_limiter` picks between them the way the caches do: Redis when a URL
is configured, in-process otherwise.
"""

from __future__ import annotations

from ragserve.ratelimit.base import BucketRule, Decision, RateLimiter, WindowRule, most_restrictive
from ragserve.ratelimit.memory import MemoryRateLimiter
from ragserve.resilience.breaker import CircuitBreaker

__all__ = [
    "BucketRule",
    "Decision",
    "MemoryRateLimiter",
    "RateLimiter",
    "WindowRule",
    "build_rate_limiter",
    "most_restrictive",
]


def build_rate_limiter(
    redis_url: str | None, *, timeout_ms: float, fail_open: bool, breaker: CircuitBreaker | None
) -> RateLimiter:
    """In-process without `redis_url` (the other settings then do not apply); otherwise shared through Redis."""
    if not redis_url:
        return MemoryRateLimiter()
    from ragserve.ratelimit.redis import RedisRateLimiter

    return RedisRateLimiter(redis_url, timeout_ms=timeout_ms, fail_open=fail_open, breaker=breaker)
