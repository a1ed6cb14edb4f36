"""The RateLimiter contract: what every implementation must do, as plain async checks.

Each check takes a `Subject`: a limiter holding no state yet, and `pass_time(seconds)`, which lets
that much time go by for it (a fake clock moved, or a real sleep). The checks use the protocol
in `ragserve.ratelimit.base` only, so the in-process and Redis limiters run the very same
functions: `test_ratelimit_contract.py` feeds every function in `CONTRACT` a fresh subject per
backend.

Against Redis, real time passes between calls (a round trip, a sleep that overshoots), so the
checks leave room for it: windows of a few tenths of a second with margins of 50 ms, buckets
that refill slowly where an exact level matters, and a capacity of 9.5 where the point is that
a bucket at exactly 0 refuses (a microsecond of refill would otherwise lift it above 0).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import REGISTRY

from ragserve.ratelimit.base import BucketRule, Decision, RateLimiter, WindowRule


@dataclass
class Subject:
    limiter: RateLimiter
    pass_time: Callable[[float], Awaitable[None]]


Check = Callable[[Subject], Awaitable[None]]


def counted(rule: str, result: str) -> float:
    return REGISTRY.get_sample_value("rag_ratelimit_decisions_total", {"rule": rule, "result": result}) or 0.0


# ------------------------------------------------------------------ sliding window


async def exactly_limit_of_rapid_hits_are_allowed(s: Subject) -> None:
    rule = WindowRule("requests", limit=5, window_s=10)
    decisions = [await s.limiter.hit("k", rule) for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0, 0]
    assert all(d.limit == 5 for d in decisions)
    assert all(9 < d.reset_s <= 10 for d in decisions)
    assert all(d.retry_after_s == 0 for d in decisions[:5])
    assert all(9 < d.retry_after_s <= 10 for d in decisions[5:])


async def the_window_slides(s: Subject) -> None:
    rule = WindowRule("requests", limit=3, window_s=0.3)
    hit = s.limiter.hit
    assert (await hit("k", rule)).allowed and (await hit("k", rule)).allowed
    await s.pass_time(0.15)
    third = await hit("k", rule)
    assert third.allowed and third.remaining == 0
    refused = await hit("k", rule)
    assert not refused.allowed and refused.remaining == 0
    assert 0.05 < refused.retry_after_s <= 0.15  # when the first two leave the window
    assert 0.25 < refused.reset_s <= 0.3  # when the third does

    await s.pass_time(0.2)  # the first two are out, the third still in
    assert [(await hit("k", rule)).allowed for _ in range(3)] == [True, True, False]

    await s.pass_time(0.35)  # everything is out, and the refused hits were never counted
    assert [(await hit("k", rule)).remaining for _ in range(3)] == [2, 1, 0]


async def keys_and_rules_are_independent(s: Subject) -> None:
    requests = WindowRule("requests", limit=2, window_s=10)
    uploads = WindowRule("uploads", limit=2, window_s=10)
    tokens = BucketRule("requests", capacity=1.5, refill_per_s=0.01)  # same name, other kind
    keys = ["a", "b", "with space", "{braces}", "ünïcødé ☃", "colons:a:b", "requests:colons"]
    for key in keys:
        assert [(await s.limiter.hit(key, requests)).allowed for _ in range(3)] == [True, True, False], key
    assert (await s.limiter.hit("a", uploads)).remaining == 1
    first, second = await s.limiter.take("a", tokens, 1), await s.limiter.take("a", tokens, 1)
    assert first.allowed and second.allowed  # 1.5, then 0.5: still above 0
    assert not (await s.limiter.take("a", tokens, 0)).allowed
    assert (await s.limiter.take("b", tokens, 0)).remaining == 1


async def many_concurrent_hits_never_admit_more_than_the_limit(s: Subject) -> None:
    rule = WindowRule("requests", limit=100, window_s=30)

    async def burst() -> list[bool]:
        return [(await s.limiter.hit("hot", rule)).allowed for _ in range(10)]

    bursts = await asyncio.gather(*(burst() for _ in range(50)))
    assert sum(sum(b) for b in bursts) == 100


# ------------------------------------------------------------------ token bucket


async def a_fresh_bucket_is_full(s: Subject) -> None:
    rule = BucketRule("tokens", capacity=10, refill_per_s=1)
    decision = await s.limiter.take("k", rule, 0)
    assert decision == Decision(allowed=True, limit=10, remaining=10, reset_s=0.0, retry_after_s=0.0)


async def take_admits_while_above_zero_and_consumes_only_when_allowed(s: Subject) -> None:
    rule = BucketRule("tokens", capacity=10, refill_per_s=1)
    first = await s.limiter.take("k", rule, 4)
    assert first.allowed and first.limit == 10 and first.remaining == 6
    assert first.retry_after_s == 0 and 3.9 < first.reset_s <= 4
    overdraft = await s.limiter.take("k", rule, 10)  # 6 left: admitted, and the bucket owes 4
    assert overdraft.allowed and overdraft.remaining == 0 and 13.9 < overdraft.reset_s <= 14

    check = await s.limiter.take("k", rule, 0)
    assert not check.allowed and check.remaining == 0
    assert 3.9 < check.retry_after_s <= 4 and 13.9 < check.reset_s <= 14
    refused = await s.limiter.take("k", rule, 5)
    assert not refused.allowed and 3.9 < refused.retry_after_s <= 4  # nothing was taken


async def debit_may_go_negative_down_to_minus_capacity(s: Subject) -> None:
    rule = BucketRule("tokens", capacity=10, refill_per_s=1)
    await s.limiter.debit("k", rule, 3)
    assert (await s.limiter.take("k", rule, 0)).remaining == 7
    await s.limiter.debit("k", rule, 100)
    owed = await s.limiter.take("k", rule, 0)
    assert not owed.allowed and 9.9 < owed.retry_after_s <= 10 and 19.9 < owed.reset_s <= 20
    await s.limiter.debit("k", rule, 5)
    assert (await s.limiter.take("k", rule, 0)).retry_after_s <= 10  # still floored at -capacity


async def the_bucket_refills(s: Subject) -> None:
    rule = BucketRule("tokens", capacity=10, refill_per_s=20)
    await s.limiter.debit("k", rule, 12)
    owed = await s.limiter.take("k", rule, 0)
    assert not owed.allowed and 0 < owed.retry_after_s <= 0.1
    await s.pass_time(0.35)  # -2 + 7
    after = await s.limiter.take("k", rule, 1)
    assert after.allowed and 3 <= after.remaining < 10
    await s.pass_time(0.4)
    full = await s.limiter.take("k", rule, 0)
    assert full.allowed and full.remaining == 10 and full.reset_s == 0


async def many_concurrent_takes_never_overdraw(s: Subject) -> None:
    rule = BucketRule("tokens", capacity=9.5, refill_per_s=0.01)
    decisions = await asyncio.gather(*(s.limiter.take("hot", rule, 1) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10  # 9.5 down to -0.5, then nothing is above 0


async def costs_must_be_finite_and_not_negative(s: Subject) -> None:
    rule = BucketRule("tokens", capacity=10, refill_per_s=1)
    for cost in (-1, math.nan, math.inf):
        for call in (s.limiter.take, s.limiter.debit):
            try:
                await call("k", rule, cost)
            except ValueError:
                continue
            raise AssertionError(f"{call.__name__} accepted cost={cost}")
    assert (await s.limiter.take("k", rule, 0)).remaining == 10


# ------------------------------------------------------------------ metrics and naming


async def every_decision_is_counted_by_rule_and_result(s: Subject) -> None:
    window = WindowRule("contract-window", limit=2, window_s=10)
    bucket = BucketRule("contract-bucket", capacity=1, refill_per_s=0.01)
    before = {(r, v): counted(r, v) for r in (window.name, bucket.name) for v in ("allowed", "limited")}
    for _ in range(3):
        await s.limiter.hit("k", window)
    await s.limiter.take("k", bucket, 5)
    await s.limiter.take("k", bucket, 0)
    await s.limiter.debit("k", bucket, 1)  # not a decision
    after = {key: counted(*key) - value for key, value in before.items()}
    assert after == {
        (window.name, "allowed"): 2,
        (window.name, "limited"): 1,
        (bucket.name, "allowed"): 1,
        (bucket.name, "limited"): 1,
    }


async def name_is_short(s: Subject) -> None:
    assert s.limiter.name.isidentifier() and len(s.limiter.name) <= 32


CONTRACT: tuple[Check, ...] = (
    exactly_limit_of_rapid_hits_are_allowed,
    the_window_slides,
    keys_and_rules_are_independent,
    many_concurrent_hits_never_admit_more_than_the_limit,
    a_fresh_bucket_is_full,
    take_admits_while_above_zero_and_consumes_only_when_allowed,
    debit_may_go_negative_down_to_minus_capacity,
    the_bucket_refills,
    many_concurrent_takes_never_overdraw,
    costs_must_be_finite_and_not_negative,
    every_decision_is_counted_by_rule_and_result,
    name_is_short,
)
