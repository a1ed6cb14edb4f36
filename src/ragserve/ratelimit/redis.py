"""The shared rate limiter: one limit for every replica, kept in Redis (standalone or cluster).

    limiter = RedisRateLimiter("redis://localhost:6379/0", timeout_ms=100, fail_open=True,
                               breaker=CircuitBreaker("ratelimit", failure_threshold=5, reset_timeout_s=5))
    decision = await limiter.hit("key:3f9a…", WindowRule("requests", limit=60, window_s=60))

Each decision is one Lua script, so one round trip, and atomic: concurrent requests from any
number of replicas can never be admitted past the limit between a read and a write. The
scripts read the time from the Redis server (`TIME`), not from the replica: replicas whose
clocks disagree still agree on the windows and refills.

Layout, one key per rule and caller key (`<prefix>` defaults to "rs:rl:"), so every script
touches a single key and a cluster routes it to whichever node owns it:

    <prefix>w:<rule>:<key>   sorted set: one member per admitted request, scored by its time (µs);
                             trimmed to the window on every hit, expiring when its newest leaves
    <prefix>b:<rule>:<key>   hash {level, at (µs)}; deleted or expired once the bucket is full again,
                             since a missing bucket reads as full

Failing. A call that Redis does not answer within `timeout_ms` (default 100 ms: a limiter sits
in front of every request, but the clock is the event loop's, and a loop busy embedding would
overrun a tighter one while Redis answered in time), that fails, or that the circuit breaker refuses without asking,
is answered by policy instead: `fail_open=True` admits (remaining = limit), trading a moment
of unlimited traffic for availability; `fail_open=False` refuses, with a retry in
`FAIL_CLOSED_RETRY_S`. Either way it is counted in `rag_ratelimit_errors_total{policy}` (a
`debit` that is lost is counted there too) and the decision in `rag_ratelimit_decisions_total`.
Recovery needs no restart: after the breaker's reset timeout it lets a probe through, closes
on success, and the client reconnects on its own.

Needs Redis 5 or later (scripts that call `TIME` replicate their effects, not the script).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Any

from redis.commands.core import AsyncScript

# The cache's connection settings (one quick reconnect on a reset socket) and the errors redis-py raises.
from ragserve.cache.redis import REDIS_ERRORS, connect
from ragserve.errors import CacheError, CircuitOpenError, ConfigurationError
from ragserve.observability.metrics import get_metrics
from ragserve.ratelimit.base import (
    BucketRule,
    Decision,
    WindowRule,
    bucket_decision,
    check_cost,
    counted,
    window_decision,
)
from ragserve.resilience.breaker import CircuitBreaker

DEFAULT_PREFIX = "rs:rl:"
DEFAULT_TIMEOUT_MS = 100.0
FAIL_CLOSED_RETRY_S = 2.0

_NOW_US = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS[1]: the log. ARGV: limit, window (µs), a member unique to this call.
# Returns {allowed (0/1), requests in the window, µs until it is empty, µs until its oldest leaves}.
SLIDING_LOG = (
    _NOW_US
    + """
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window))
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, string.format('%.0f', now), ARGV[3])
  redis.call('PEXPIRE', key, string.format('%.0f', math.ceil(window / 1000)))
  count = count + 1
  allowed = 1
end
local oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
return {allowed, count, newest + window - now, oldest + window - now}
"""
)

# KEYS[1]: the bucket. ARGV: capacity, refill per second, cost, '1' to consume whatever the level.
# Returns {allowed (0/1), the level afterwards (a string: Lua numbers come back truncated)}.
TOKEN_BUCKET = (
    _NOW_US
    + """
local key, capacity, rate, cost = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'level', 'at')
local level, at = tonumber(state[1]), tonumber(state[2])
if level == nil or at == nil then
  level = capacity
else
  level = math.min(capacity, level + math.max(0, now - at) / 1000000 * rate)
end
local allowed = ARGV[4] == '1' or level > 0
if allowed then
  level = math.max(-capacity, level - cost)
  local full_in_ms = math.ceil((capacity - level) / rate * 1000)
  if full_in_ms > 0 then
    redis.call('HSET', key, 'level', string.format('%.17g', level), 'at', string.format('%.0f', now))
    redis.call('PEXPIRE', key, string.format('%.0f', full_in_ms))
  else
    redis.call('DEL', key)
  end
end
return {allowed and 1 or 0, string.format('%.17g', level)}
"""
)


class RedisRateLimiter:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout_ms: float = DEFAULT_TIMEOUT_MS,
        breaker: CircuitBreaker | None = None,
        fail_open: bool = True,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        """Without a `breaker`, one of its own opens after 5 consecutive failures and probes after 5 s."""
        if not timeout_ms > 0:
            raise ConfigurationError(f"rate limiter timeout_ms must be > 0, got {timeout_ms}")
        if not prefix:
            raise ConfigurationError("rate limiter prefix must be non-empty")
        self.fail_open = fail_open
        self.prefix = prefix
        if breaker is None:
            breaker = CircuitBreaker("ratelimit:redis", failure_threshold=5, reset_timeout_s=5.0)
        self.breaker = breaker
        self._timeout_s = timeout_ms / 1000
        self._client = connect(url, self._timeout_s, self._timeout_s)
        self._log = self._client.register_script(SLIDING_LOG)
        self._bucket = self._client.register_script(TOKEN_BUCKET)
        self._errors = get_metrics().ratelimit_errors.labels(policy="open" if fail_open else "closed")

    async def hit(self, key: str, rule: WindowRule) -> Decision:
        window_us = max(1, round(rule.window_s * 1_000_000))
        args = [rule.limit, window_us, secrets.token_hex(8)]
        reply = await self._call(self._log, f"{self.prefix}w:{rule.name}:{key}", args)
        if reply is None:
            return self._fallback(rule.name, rule.limit)
        allowed, count, reset_us, retry_us = reply
        return window_decision(rule, allowed == 1, int(count), reset_us / 1_000_000, retry_us / 1_000_000)

    async def take(self, key: str, rule: BucketRule, cost: float) -> Decision:
        check_cost(cost)
        reply = await self._call(self._bucket, self._bucket_key(key, rule), [rule.capacity, rule.refill_per_s, cost, 0])
        if reply is None:
            return self._fallback(rule.name, math.floor(rule.capacity))
        allowed, level = reply
        return bucket_decision(rule, allowed == 1, float(level))

    async def debit(self, key: str, rule: BucketRule, cost: float) -> None:
        check_cost(cost)
        await self._call(self._bucket, self._bucket_key(key, rule), [rule.capacity, rule.refill_per_s, cost, 1])

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except REDIS_ERRORS as exc:
            raise CacheError(f"rate limiter: closing redis failed: {exc}") from exc

    def _bucket_key(self, key: str, rule: BucketRule) -> str:
        return f"{self.prefix}b:{rule.name}:{key}"

    def _fallback(self, rule_name: str, limit: int) -> Decision:
        """The policy's decision when Redis could not decide."""
        if self.fail_open:
            decision = Decision(allowed=True, limit=limit, remaining=limit, reset_s=0.0, retry_after_s=0.0)
        else:
            decision = Decision(
                allowed=False, limit=limit, remaining=0, reset_s=FAIL_CLOSED_RETRY_S, retry_after_s=FAIL_CLOSED_RETRY_S
            )
        return counted(rule_name, decision)

    async def _call(self, script: AsyncScript, key: str, args: list[Any]) -> list[Any] | None:
        """The script's reply, or None (counted) when Redis failed, overran the timeout or the breaker is open."""
        try:
            async with self.breaker.guard():
                return await self._ask(script, key, args)
        except (CacheError, CircuitOpenError):
            self._errors.inc()
            return None

    async def _ask(self, script: AsyncScript, key: str, args: list[Any]) -> list[Any]:
        """`script` on `key`, every failure a `CacheError` so that the breaker counts it."""
        try:
            async with asyncio.timeout(self._timeout_s):
                reply: list[Any] = await script(keys=[key], args=args)
                return reply
        except TimeoutError as exc:
            raise CacheError(f"rate limiter: redis gave no answer within {self._timeout_s * 1000:.0f} ms") from exc
        except REDIS_ERRORS as exc:
            raise CacheError(f"rate limiter: redis: {type(exc).__name__}: {exc}") from exc
