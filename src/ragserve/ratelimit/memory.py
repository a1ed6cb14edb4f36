"""The in-process rate limiter: exact limits for one process, the default when there is no Redis.

    limiter = MemoryRateLimiter(max_keys=100_000)
    decision = await limiter.hit("key:3f9a…", WindowRule("requests", limit=60, window_s=60))

With several replicas each one enforces the limit on its own (N replicas admit up to N times
the limit); use `RedisRateLimiter` to share one limit between them.

A window keeps the time of each admitted request (a sliding log: exact, `limit` floats per key);
a bucket keeps its level and when it was last refilled. Memory stays bounded: state is kept in
least-recently-used order, and a key whose window has emptied or whose bucket is full again is
dropped as soon as it reaches the front of that order (forgetting it changes nothing: a missing
key reads as an empty window or a full bucket). Beyond `max_keys` the least recently used key
is dropped even if still limited, which can only let its next requests through early.

It serves one process and one event loop: no method awaits, so a check and its update are never
split by another task and no lock is needed.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ragserve.ratelimit.base import BucketRule, Decision, WindowRule, bucket_decision, check_cost, window_decision


@dataclass(slots=True)
class _Log:
    """Times of the requests admitted in the window, oldest first."""

    times: deque[float] = field(default_factory=deque)
    idle_at: float = 0.0  # when the newest leaves the window


@dataclass(slots=True)
class _Bucket:
    level: float
    at: float  # when `level` was computed
    idle_at: float = 0.0  # when it is full again


S = TypeVar("S", _Log, _Bucket)


class MemoryRateLimiter:
    name = "memory"

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.max_keys = max_keys
        self._clock = clock
        # ("w" or "b", rule name, key) -> state; least recently used first.
        self._state: OrderedDict[tuple[str, str, str], _Log | _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """How many keys hold state now."""
        return len(self._state)

    async def hit(self, key: str, rule: WindowRule) -> Decision:
        now = self._clock()
        log = self._log(key, rule, now)
        times = log.times
        allowed = len(times) < rule.limit
        if allowed:
            times.append(now)
            log.idle_at = now + rule.window_s
        # Never empty here: either this request was just added, or the window is full.
        reset_s, retry_after_s = times[-1] + rule.window_s - now, times[0] + rule.window_s - now
        return window_decision(rule, allowed, len(times), reset_s, retry_after_s)

    async def take(self, key: str, rule: BucketRule, cost: float) -> Decision:
        check_cost(cost)
        bucket = self._bucket(key, rule, self._clock())
        allowed = bucket.level > 0
        if allowed:
            _consume(bucket, rule, cost)
        return bucket_decision(rule, allowed, bucket.level)

    async def debit(self, key: str, rule: BucketRule, cost: float) -> None:
        check_cost(cost)
        _consume(self._bucket(key, rule, self._clock()), rule, cost)

    async def aclose(self) -> None:
        self._state.clear()

    def _log(self, key: str, rule: WindowRule, now: float) -> _Log:
        state = self._touch(("w", rule.name, key), now)
        if not isinstance(state, _Log):
            state = self._keep(("w", rule.name, key), _Log())
        oldest_kept = now - rule.window_s
        while state.times and state.times[0] <= oldest_kept:
            state.times.popleft()
        return state

    def _bucket(self, key: str, rule: BucketRule, now: float) -> _Bucket:
        """The bucket of `key`, refilled up to `now`."""
        state = self._touch(("b", rule.name, key), now)
        if not isinstance(state, _Bucket):
            return self._keep(("b", rule.name, key), _Bucket(rule.capacity, now))
        state.level = min(rule.capacity, state.level + max(0.0, now - state.at) * rule.refill_per_s)
        state.at = now
        return state

    def _touch(self, slot: tuple[str, str, str], now: float) -> _Log | _Bucket | None:
        """Drop idle state from the front, then the state in `slot` (made most recently used), if any."""
        while self._state:
            first = next(iter(self._state.values()))
            if first.idle_at > now:
                break
            self._state.popitem(last=False)
        state = self._state.get(slot)
        if state is not None:
            self._state.move_to_end(slot)
        return state

    def _keep(self, slot: tuple[str, str, str], state: S) -> S:
        self._state[slot] = state
        if len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return state


def _consume(bucket: _Bucket, rule: BucketRule, cost: float) -> None:
    bucket.level = max(-rule.capacity, bucket.level - cost)
    bucket.idle_at = bucket.at + (rule.capacity - bucket.level) / rule.refill_per_s
