"""retry_async with a fake clock, a sleep that only records and advances it, and fixed random numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from ragserve.errors import (
    CacheError,
    CircuitOpenError,
    ContextTooLongError,
    DeadlineExceededError,
    EmbedderError,
    InvalidInputError,
    LLMBadRequestError,
    LLMRateLimitedError,
    LLMTimeoutError,
    LLMUnavailableError,
    MaintenanceError,
    StoreError,
)
from ragserve.resilience.deadline import Deadline, deadline_scope
from ragserve.resilience.retry import is_retryable, retry_async


class FakeTime:
    """A clock plus a sleep that records each wait and moves the clock by it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        self.now += seconds


class Flaky:
    """Raises the given errors in turn, then returns "ok"; each call takes `takes_s` of fake time."""

    def __init__(self, errors: Iterable[BaseException], time: FakeTime | None = None, takes_s: float = 0.0) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.time = time
        self.takes_s = takes_s

    async def __call__(self) -> str:
        self.calls += 1
        if self.time is not None:
            self.time.now += self.takes_s
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def fixed(*values: float) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


def down(n: int) -> list[BaseException]:
    return [LLMUnavailableError(f"down {i}", provider="a") for i in range(n)]


async def test_success_after_transient_failures_returns_the_value() -> None:
    t = FakeTime()
    fn = Flaky(down(2))
    assert await retry_async(fn, attempts=3, sleep=t.sleep, random=lambda: 1.0, deadline=Deadline.unbounded()) == "ok"
    assert fn.calls == 3
    assert t.sleeps == pytest.approx([0.1, 0.2])


async def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    t = FakeTime()
    errors = down(5)
    fn = Flaky(errors)
    with pytest.raises(LLMUnavailableError) as caught:
        await retry_async(
            fn,
            attempts=5,
            base_delay_s=0.1,
            max_delay_s=0.3,
            sleep=t.sleep,
            random=fixed(0.5, 1.0, 0.5, 0.0, 1.0),
        )
    # ceilings 0.1, 0.2, 0.4 -> 0.3, 0.8 -> 0.3, each scaled by the random draw (tenacity draws a wait after
    # the last attempt too, before it decides to stop; that one is never slept)
    assert t.sleeps == pytest.approx([0.05, 0.2, 0.15, 0.0])
    assert fn.calls == 5
    assert caught.value is errors[-1]


async def test_retry_after_raises_the_wait_to_at_least_that_value() -> None:
    t = FakeTime()
    fn = Flaky(
        [
            LLMRateLimitedError("slow down", provider="a", retry_after=1.5),
            LLMRateLimitedError("slow down", provider="a", retry_after=0.01),
            LLMRateLimitedError("slow down", provider="a"),
        ]
    )
    assert await retry_async(fn, attempts=4, sleep=t.sleep, random=lambda: 1.0) == "ok"
    # 1.5 beats the jitter; 0.01 does not (ceiling 0.2); no Retry-After leaves the jitter (0.4).
    assert t.sleeps == pytest.approx([1.5, 0.2, 0.4])


@pytest.mark.parametrize(
    "error",
    [
        LLMBadRequestError("bad", provider="a"),
        ContextTooLongError("too long", provider="a"),
        InvalidInputError("no"),
        CircuitOpenError("llm:a", retry_in=3.0),
        DeadlineExceededError("late", stage="generate"),
        MaintenanceError("maintenance"),
        ValueError("bug"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_non_retryable_errors_are_raised_at_once_after_one_call(error: BaseException) -> None:
    t = FakeTime()
    fn = Flaky([error])
    with pytest.raises(type(error)) as caught:
        await retry_async(fn, attempts=5, sleep=t.sleep, random=lambda: 1.0)
    assert caught.value is error
    assert fn.calls == 1
    assert t.sleeps == []


@pytest.mark.parametrize("attempts", [1, 2, 4])
async def test_attempts_bound_the_number_of_calls(attempts: int) -> None:
    t = FakeTime()
    fn = Flaky(down(10))
    with pytest.raises(LLMUnavailableError):
        await retry_async(fn, attempts=attempts, sleep=t.sleep, random=lambda: 1.0)
    assert fn.calls == attempts
    assert len(t.sleeps) == attempts - 1


async def test_the_deadline_stops_retrying_before_a_sleep_would_reach_it() -> None:
    t = FakeTime()
    budget = 1.0
    deadline = Deadline(budget, t.clock)
    errors = down(10)
    fn = Flaky(errors, t, takes_s=0.1)
    with pytest.raises(LLMUnavailableError) as caught:
        await retry_async(
            fn, attempts=10, base_delay_s=0.5, max_delay_s=5.0, deadline=deadline, sleep=t.sleep, random=lambda: 1.0
        )
    # call 0.0-0.1, sleep 0.5 (0.9 left), call 0.6-0.7, a 1.0 s wait would pass the deadline: stop.
    assert fn.calls == 2
    assert t.sleeps == pytest.approx([0.5])
    assert t.now <= budget
    assert caught.value is errors[1]


async def test_a_retry_after_beyond_the_deadline_raises_immediately() -> None:
    t = FakeTime()
    error = LLMRateLimitedError("slow down", provider="a", retry_after=5.0)
    fn = Flaky([error])
    with pytest.raises(LLMRateLimitedError) as caught:
        await retry_async(fn, deadline=Deadline(2.0, t.clock), sleep=t.sleep, random=lambda: 0.0)
    assert caught.value is error
    assert fn.calls == 1
    assert t.sleeps == []


async def test_an_expired_deadline_allows_no_retry_even_with_a_zero_wait() -> None:
    t = FakeTime()
    fn = Flaky(down(3), t, takes_s=1.0)
    with pytest.raises(LLMUnavailableError):
        await retry_async(fn, deadline=Deadline(1.0, t.clock), sleep=t.sleep, random=lambda: 0.0)
    assert fn.calls == 1


async def test_without_a_deadline_argument_the_scoped_deadline_bounds_retries() -> None:
    t = FakeTime()
    with deadline_scope(Deadline(2.0, t.clock)):
        fn = Flaky([LLMRateLimitedError("slow down", retry_after=5.0)])
        with pytest.raises(LLMRateLimitedError):
            await retry_async(fn, sleep=t.sleep, random=lambda: 0.0)
        assert fn.calls == 1

        fn = Flaky([LLMRateLimitedError("slow down", retry_after=5.0)])
        assert await retry_async(fn, deadline=Deadline.unbounded(), sleep=t.sleep, random=lambda: 0.0) == "ok"
        assert t.sleeps == [5.0]


async def test_on_retry_reports_the_failed_attempt_its_error_and_the_wait() -> None:
    t = FakeTime()
    errors = down(2)
    seen: list[tuple[int, BaseException, float]] = []
    fn = Flaky(errors)
    await retry_async(
        lambda: fn(),
        attempts=3,
        sleep=t.sleep,
        random=lambda: 0.5,
        on_retry=lambda n, exc, wait: seen.append((n, exc, wait)),
    )
    assert [(n, exc) for n, exc, _ in seen] == [(1, errors[0]), (2, errors[1])]
    assert [wait for _, _, wait in seen] == pytest.approx([0.05, 0.1])


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        await retry_async(Flaky([]), attempts=0)
    with pytest.raises(ValueError):
        await retry_async(Flaky([]), base_delay_s=-1.0)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (LLMUnavailableError("x"), True),
        (LLMTimeoutError("x"), True),
        (LLMRateLimitedError("x", retry_after=1.0), True),
        (EmbedderError("x"), True),
        (StoreError("x"), True),
        (CacheError("x"), True),
        (LLMBadRequestError("x"), False),
        (ContextTooLongError("x"), False),
        (CircuitOpenError("x"), False),
        (InvalidInputError("x"), False),
        (DeadlineExceededError("x"), False),
        (TimeoutError(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_is_retryable(error: BaseException, expected: bool) -> None:
    assert is_retryable(error) is expected
