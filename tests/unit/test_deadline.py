"""Deadline arithmetic on a fake clock, and the context variable that carries it."""

from __future__ import annotations

import asyncio
import math

import pytest

from ragserve.errors import DeadlineExceededError
from ragserve.resilience.deadline import Deadline, current_deadline, deadline_scope


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_remaining_and_elapsed_follow_the_clock_and_remaining_never_goes_negative() -> None:
    clock = FakeClock()
    deadline = Deadline(2.0, clock)
    assert deadline.elapsed() == 0.0
    assert deadline.remaining() == 2.0
    assert not deadline.expired
    clock.now += 1.5
    assert deadline.elapsed() == pytest.approx(1.5)
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 1.0
    assert deadline.remaining() == 0.0
    assert deadline.expired
    assert deadline.budget_s == 2.0


def test_cap_and_allows() -> None:
    clock = FakeClock()
    deadline = Deadline(3.0, clock)
    assert deadline.cap(10.0) == 3.0
    assert deadline.cap(1.0) == 1.0
    assert deadline.allows(3.0)
    assert not deadline.allows(3.01)
    clock.now += 5.0
    assert deadline.cap(1.0) == 0.0
    assert deadline.allows(0.0)
    assert not deadline.allows(0.001)


def test_share_is_a_fraction_of_what_remains_capped_by_at_most() -> None:
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    clock.now += 2.0
    assert deadline.share(0.5) == pytest.approx(4.0)
    assert deadline.share(0.5, at_most=1.5) == 1.5
    assert deadline.share(0.0) == 0.0
    with pytest.raises(ValueError):
        deadline.share(1.5)
    with pytest.raises(ValueError):
        deadline.share(-0.1)


def test_check_raises_naming_the_stage_and_the_budget_once_expired() -> None:
    clock = FakeClock()
    deadline = Deadline(0.25, clock)
    deadline.check("retrieve")
    clock.now += 0.25
    with pytest.raises(DeadlineExceededError) as caught:
        deadline.check("rerank")
    assert caught.value.stage == "rerank"
    assert "rerank" in caught.value.message
    assert "0.25s" in caught.value.message


def test_a_zero_budget_is_expired_from_the_start_and_a_negative_one_is_refused() -> None:
    assert Deadline(0.0, FakeClock()).expired
    with pytest.raises(ValueError):
        Deadline(-1.0)
    with pytest.raises(ValueError):
        Deadline(math.nan)


def test_unbounded_never_expires() -> None:
    clock = FakeClock()
    deadline = Deadline.unbounded(clock)
    clock.now += 1e9
    assert not deadline.bounded
    assert Deadline(1.0).bounded
    assert deadline.remaining() == math.inf
    assert not deadline.expired
    assert deadline.cap(5.0) == 5.0
    assert deadline.allows(1e12)
    assert deadline.share(0.0) == 0.0
    assert deadline.share(0.5, at_most=2.0) == 2.0
    deadline.check("generate")


def test_scope_sets_nests_clears_and_restores_even_on_error() -> None:
    outer, inner = Deadline(5.0), Deadline(1.0)
    assert current_deadline() is None
    with deadline_scope(outer) as entered:
        assert entered is outer
        assert current_deadline() is outer
        with deadline_scope(inner):
            assert current_deadline() is inner
        assert current_deadline() is outer
        with deadline_scope(None):
            assert current_deadline() is None
        with pytest.raises(RuntimeError), deadline_scope(inner):
            raise RuntimeError("boom")
        assert current_deadline() is outer
    assert current_deadline() is None


async def test_tasks_see_the_deadline_of_the_scope_they_were_started_in() -> None:
    async def request(deadline: Deadline) -> Deadline | None:
        with deadline_scope(deadline):
            await asyncio.sleep(0)
            child = asyncio.create_task(read_later())
            return await child

    async def read_later() -> Deadline | None:
        await asyncio.sleep(0)
        return current_deadline()

    first, second = Deadline(1.0), Deadline(2.0)
    seen = await asyncio.gather(request(first), request(second))
    assert seen[0] is first
    assert seen[1] is second
    assert current_deadline() is None
