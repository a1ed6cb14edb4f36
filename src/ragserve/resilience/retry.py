"""Retrying transient dependency failures: full-jitter backoff, Retry-After, inside the request's deadline.

    answer = await retry_async(lambda: provider.generate(prompt), attempts=3, deadline=deadline)

Built on tenacity's `AsyncRetrying`; what tenacity does not have is the deadline-aware stop (decided after
the next wait is known) and a wait that honours a provider's Retry-After. The last error is re-raised as
itself, never wrapped in tenacity's `RetryError`.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from ragserve.errors import CircuitOpenError, DependencyError, LLMRateLimitedError
from ragserve.resilience.deadline import Deadline, current_deadline

T = TypeVar("T")

OnRetry = Callable[[int, BaseException, float], None]


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt within this request: a transient dependency failure.

    Stricter than `RagserveError.retryable`, which also marks errors a *client* may retry later
    (`DeadlineExceededError`, `MaintenanceError`): retrying those inside the request cannot help. Bad requests
    (`LLMBadRequestError`, `ContextTooLongError`) and invalid input will fail the same way again, and a
    `CircuitOpenError` is never retried, since not hammering the dependency is the breaker's whole point.
    """
    return isinstance(exc, DependencyError) and exc.retryable and not isinstance(exc, CircuitOpenError)


class _FullJitterBackoff(wait_base):
    """`random() * min(max_delay, base * 2**n)` before retry n+1, raised to a Retry-After the provider sent."""

    def __init__(self, base_delay_s: float, max_delay_s: float, random: Callable[[], float]) -> None:
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._random = random

    def __call__(self, retry_state: RetryCallState) -> float:
        # Capping the exponent keeps 2**n finite for any attempt count; the ceiling is hit long before.
        exponent = min(retry_state.attempt_number - 1, 62)
        delay = self._random() * min(self._max_delay_s, self._base_delay_s * 2.0**exponent)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, LLMRateLimitedError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay


class _StopBeforeDeadline(stop_base):
    """Stop when the coming wait would use up what is left: an attempt after it could not finish in time."""

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        # tenacity computes the wait before it asks the stop, so the coming sleep is known here.
        return self._deadline.remaining() <= retry_state.upcoming_sleep


def _before_sleep(on_retry: OnRetry) -> Callable[[RetryCallState], None]:
    def report(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if exc is not None:
            on_retry(retry_state.attempt_number, exc, retry_state.upcoming_sleep)

    return report


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    base_delay_s: float = 0.1,
    max_delay_s: float = 2.0,
    deadline: Deadline | None = None,
    retry_on: Callable[[BaseException], bool] = is_retryable,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
    on_retry: OnRetry | None = None,
) -> T:
    """Call `fn` until it succeeds, at most `attempts` times, sleeping with full jitter between tries.

    Only errors `retry_on` accepts are retried; any other is raised at once. With a `deadline` (by default the
    one of the enclosing `deadline_scope`, if any; pass `Deadline.unbounded()` to opt out) no sleep runs past
    it: when the coming wait would leave no time for another attempt, the last error is raised immediately.
    Each attempt's own timeout is `fn`'s business, e.g. `deadline.cap(timeout_s)`.

    `on_retry(attempt, exc, wait_s)` is called before each sleep, with the number of the attempt that failed.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if base_delay_s < 0 or max_delay_s < 0:
        raise ValueError(f"delays must be >= 0, got base_delay_s={base_delay_s}, max_delay_s={max_delay_s}")
    bound = deadline if deadline is not None else current_deadline()
    stop: stop_base = stop_after_attempt(attempts)
    if bound is not None:
        stop = stop | _StopBeforeDeadline(bound)
    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=_FullJitterBackoff(base_delay_s, max_delay_s, random),
        retry=retry_if_exception(retry_on),
        before_sleep=_before_sleep(on_retry) if on_retry is not None else None,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await fn()
    # tenacity either hands out another attempt or raises the last error; it never ends the loop quietly here.
    raise AssertionError("retry loop ended without an outcome")
