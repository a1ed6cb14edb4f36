"""The rate limiting protocol: two kinds of rule, one decision type the HTTP layer turns into headers.

    hourly = WindowRule("requests", limit=1000, window_s=3600)
    tokens = BucketRule("tokens", capacity=40_000, refill_per_s=40_000 / 60)

    decision = most_restrictive([await limiter.hit(api_key, hourly), await limiter.take(tenant, tokens, 0)])
    ...                                           # answer the request, then:
    await limiter.debit(tenant, tokens, answer.usage.total_tokens)

Requests are limited by a *sliding window*, exact rather than approximated from fixed buckets:
a client can never get `2 * limit` requests through by straddling a bucket boundary. LLM tokens
are limited by a *token bucket* because a request's cost is only known after the answer: `take`
checks before the call (and may charge an estimate), `debit` charges what was really spent. A
debit may drive the bucket below zero, down to `-capacity`; later requests then wait until it
refills above zero, so a burst of long answers is paid back rather than forgiven.

`take` admits while the bucket holds anything at all (level > 0), whatever the cost: a cost known
only approximately should not refuse a request the client could afford a moment later. Refused
hits and takes consume nothing. Every decision is counted in `rag_ratelimit_decisions_total`
by rule name (a small fixed set the caller chooses) and result; never by key.

Implementations: `memory.MemoryRateLimiter` (one process) and `redis.RedisRateLimiter` (every
replica sharing one limit). Both run `tests/contract/test_ratelimit_contract.py`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ragserve.observability.metrics import get_metrics

# Rule names become metric labels and parts of Redis keys: short, and without the key separator.
_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# A refused decision always promises some wait, so a client never retries in a busy loop.
MIN_RETRY_S = 0.001


def _check_name(name: str) -> None:
    if not _RULE_NAME.fullmatch(name):
        raise ValueError(f"rule name must be 1-64 letters, digits, '_', '.' or '-', got {name!r}")


def _positive(what: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a positive finite number, got {value}")


@dataclass(frozen=True, slots=True)
class WindowRule:
    """At most `limit` requests in any `window_s` seconds."""

    name: str
    limit: int
    window_s: float

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        _positive("window_s", self.window_s)


@dataclass(frozen=True, slots=True)
class BucketRule:
    """`capacity` tokens at most (the burst), refilled at `refill_per_s`."""

    name: str
    capacity: float
    refill_per_s: float

    def __post_init__(self) -> None:
        _check_name(self.name)
        _positive("capacity", self.capacity)
        _positive("refill_per_s", self.refill_per_s)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int  # X-RateLimit-Limit
    remaining: int  # X-RateLimit-Remaining, >= 0
    reset_s: float  # seconds until the window or bucket is fully available again (X-RateLimit-Reset)
    retry_after_s: float  # 0 when allowed; otherwise when a retry can succeed (Retry-After)


class RateLimiter(Protocol):
    name: str

    async def hit(self, key: str, rule: WindowRule) -> Decision:
        """Count one request against `key` if `rule` allows it."""
        ...

    async def take(self, key: str, rule: BucketRule, cost: float) -> Decision:
        """Allowed iff the bucket's level is above 0; consumes `cost` (0: just check) only if allowed."""
        ...

    async def debit(self, key: str, rule: BucketRule, cost: float) -> None:
        """Consume `cost` whatever the level; the bucket may go negative, down to `-capacity`."""
        ...

    async def aclose(self) -> None: ...


def most_restrictive(decisions: Iterable[Decision]) -> Decision:
    """The decision the response headers should report: the refused one that waits longest, else the one
    with the least remaining."""
    candidates = list(decisions)
    if not candidates:
        raise ValueError("most_restrictive needs at least one decision")
    refused = [d for d in candidates if not d.allowed]
    if refused:
        return max(refused, key=lambda d: d.retry_after_s)
    return min(candidates, key=lambda d: d.remaining)


def check_cost(cost: float) -> None:
    """For implementations: a cost is a finite number of tokens, 0 or more."""
    if not (cost >= 0 and math.isfinite(cost)):
        raise ValueError(f"cost must be a finite number >= 0, got {cost}")


def window_decision(rule: WindowRule, allowed: bool, count: int, reset_s: float, retry_after_s: float) -> Decision:
    """For implementations: the decision once `count` requests are in the window, counted in metrics."""
    decision = Decision(
        allowed=allowed,
        limit=rule.limit,
        remaining=max(0, rule.limit - count),
        reset_s=max(0.0, reset_s),
        retry_after_s=0.0 if allowed else max(MIN_RETRY_S, retry_after_s),
    )
    return counted(rule.name, decision)


def bucket_decision(rule: BucketRule, allowed: bool, level: float) -> Decision:
    """For implementations: the decision once the bucket holds `level`, counted in metrics."""
    decision = Decision(
        allowed=allowed,
        limit=math.floor(rule.capacity),
        remaining=max(0, math.floor(level)),
        reset_s=max(0.0, (rule.capacity - level) / rule.refill_per_s),
        retry_after_s=0.0 if allowed else max(MIN_RETRY_S, -level / rule.refill_per_s),
    )
    return counted(rule.name, decision)


def counted(rule_name: str, decision: Decision) -> Decision:
    """Count `decision` in `rag_ratelimit_decisions_total` and hand it back."""
    result = "allowed" if decision.allowed else "limited"
    get_metrics().ratelimit_decisions.labels(rule=rule_name, result=result).inc()
    return decision
