"""Circuit breakers: stop calling a dependency that keeps failing, then probe it back to health.

    breaker = CircuitBreaker("llm:openai", failure_threshold=5, reset_timeout_s=30)
    async with breaker.guard():          # CircuitOpenError here while open, nothing called
        answer = await provider.generate(prompt)

closed     every call goes through; `failure_threshold` consecutive counted failures open it.
open       calls fail fast with `CircuitOpenError(name, retry_in=...)` until `reset_timeout_s` has passed.
half_open  up to `half_open_max_calls` concurrent probes go through, the rest fail fast; a counted probe
           failure opens it again (the timer restarts), `success_threshold` probe successes close it.

Only failures that say the dependency is unhealthy count (`is_failure`; by default a retryable
`DependencyError`): a bad request or a cancelled call says nothing about the dependency's health.

For code that cannot wrap the call in one `async with` (a stream consumed elsewhere), use
`permit = before_call()` and later `record_success(permit)` or `record_failure(exc, permit)`. The permit ties
the outcome to the state that admitted the call, so a slow call that started before a transition can neither
free another call's probe slot nor count toward the new state. A probe slot held longer than
`reset_timeout_s` (a stream cancelled before it reported) is presumed lost and freed, so a forgotten
outcome cannot wedge the breaker half-open.

Breakers are meant for one event loop: no method awaits, so a check and its update are never split by another
task, but they are not guarded against threads.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TypedDict, TypeVar

from ragserve.errors import CircuitOpenError, DependencyError

T = TypeVar("T")

logger = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    """`value` is what a `rag_circuit_state` gauge exports; `label` what `/status` shows."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


TransitionHook = Callable[[str, BreakerState, BreakerState], None]


class BreakerSnapshot(TypedDict):
    name: str
    state: str
    consecutive_failures: int
    opened_at: float | None
    retry_in: float | None
    probes_in_flight: int


@dataclass(frozen=True, slots=True)
class BreakerPermit:
    """Returned by `before_call`; hand it back to `record_success` / `record_failure`."""

    generation: int
    probe_id: int | None = None  # set when the call is a half-open probe

    @property
    def probe(self) -> bool:
        return self.probe_id is not None


def is_dependency_failure(exc: BaseException) -> bool:
    """The default `is_failure`: a retryable dependency error, but never the breaker's own fail-fast."""
    return isinstance(exc, DependencyError) and exc.retryable and not isinstance(exc, CircuitOpenError)


def _validate(failure_threshold: int, reset_timeout_s: float, half_open_max_calls: int, success_threshold: int) -> None:
    if failure_threshold < 1:
        raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
    if not reset_timeout_s >= 0:
        raise ValueError(f"reset_timeout_s must be >= 0, got {reset_timeout_s}")
    if half_open_max_calls < 1:
        raise ValueError(f"half_open_max_calls must be >= 1, got {half_open_max_calls}")
    if success_threshold < 1:
        raise ValueError(f"success_threshold must be >= 1, got {success_threshold}")


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 2,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionHook | None = None,
        is_failure: Callable[[BaseException], bool] = is_dependency_failure,
    ) -> None:
        _validate(failure_threshold, reset_timeout_s, half_open_max_calls, success_threshold)
        self.name = name
        self._failure_threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._half_open_max_calls = half_open_max_calls
        self._success_threshold = success_threshold
        self._clock = clock
        self._on_transition = on_transition
        self._is_failure = is_failure

        self._state = BreakerState.CLOSED
        # Bumped on every transition; a permit from an older generation is stale.
        self._generation = 0
        self._failures = 0
        self._opened_at: float | None = None
        self._probes: dict[int, float] = {}  # probe id -> admitted at, oldest first
        self._next_probe_id = 0
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        self._maybe_half_open()
        return self._state

    def retry_in(self) -> float | None:
        """Seconds until an open breaker lets a probe through; `None` unless open."""
        self._maybe_half_open()
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self._reset_timeout_s - self._clock())

    def before_call(self) -> BreakerPermit:
        """Admit a call or raise `CircuitOpenError`; in half-open, admitting takes a probe slot."""
        self._maybe_half_open()
        if self._state is BreakerState.CLOSED:
            return BreakerPermit(self._generation)
        if self._state is BreakerState.OPEN:
            raise CircuitOpenError(self.name, retry_in=self.retry_in())
        now = self._clock()
        for probe_id, admitted_at in list(self._probes.items()):
            if now - admitted_at > self._reset_timeout_s:
                del self._probes[probe_id]
        if len(self._probes) >= self._half_open_max_calls:
            # The probes' outcome decides when the next call may go, so there is no time to promise.
            raise CircuitOpenError(self.name, retry_in=None)
        probe_id = self._next_probe_id
        self._next_probe_id += 1
        self._probes[probe_id] = now
        return BreakerPermit(self._generation, probe_id)

    def record_success(self, permit: BreakerPermit | None = None) -> None:
        """The admitted call succeeded. Without a permit, the outcome is taken to belong to the current state."""
        if not self._settle(permit):
            return
        if self._state is BreakerState.CLOSED:
            self._failures = 0
        elif self._state is BreakerState.HALF_OPEN:
            self._probe_successes += 1
            if self._probe_successes >= self._success_threshold:
                self._transition(BreakerState.CLOSED)

    def record_failure(self, exc: BaseException, permit: BreakerPermit | None = None) -> None:
        """The admitted call raised `exc`; it changes the state only if `is_failure(exc)`."""
        if not self._settle(permit) or not self._is_failure(exc):
            return
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self._failure_threshold:
                self._transition(BreakerState.OPEN)
        elif self._state is BreakerState.HALF_OPEN:
            self._failures += 1
            self._transition(BreakerState.OPEN)

    def guard(self) -> _Guard:
        """`async with breaker.guard(): ...` admits the block or raises `CircuitOpenError`, then records it."""
        return _Guard(self)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async with self.guard():
            return await fn()

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        return {
            "name": self.name,
            "state": state.label,
            "consecutive_failures": self._failures,
            "opened_at": self._opened_at,
            "retry_in": self.retry_in(),
            "probes_in_flight": len(self._probes),
        }

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.label})"

    def _settle(self, permit: BreakerPermit | None) -> bool:
        """Free the call's probe slot; False when the outcome no longer speaks for the current state."""
        if permit is not None and permit.generation != self._generation:
            return False
        if self._state is BreakerState.OPEN:
            return False
        if self._state is BreakerState.HALF_OPEN:
            if permit is None:
                if self._probes:
                    del self._probes[next(iter(self._probes))]
            elif permit.probe_id is not None:
                self._probes.pop(permit.probe_id, None)
        return True

    def _maybe_half_open(self) -> None:
        if (
            self._state is BreakerState.OPEN
            and self._opened_at is not None
            and self._clock() - self._opened_at >= self._reset_timeout_s
        ):
            self._transition(BreakerState.HALF_OPEN)

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._probes.clear()
        self._probe_successes = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
        elif new is BreakerState.CLOSED:
            self._opened_at = None
            self._failures = 0
        if self._on_transition is not None:
            try:
                self._on_transition(self.name, old, new)
            except Exception:
                # A broken metrics or log hook must not turn a served call into a failed one.
                logger.exception("circuit breaker %s: on_transition hook failed", self.name)


class _Guard:
    __slots__ = ("_breaker", "_permit")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._permit: BreakerPermit | None = None

    async def __aenter__(self) -> None:
        self._permit = self._breaker.before_call()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._permit is None:
            return
        if exc is None:
            self._breaker.record_success(self._permit)
        else:
            self._breaker.record_failure(exc, self._permit)


class BreakerRegistry:
    """One breaker per dependency name, made on first use with the registry's shared settings."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 2,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionHook | None = None,
        is_failure: Callable[[BaseException], bool] = is_dependency_failure,
    ) -> None:
        _validate(failure_threshold, reset_timeout_s, half_open_max_calls, success_threshold)
        self._make = functools.partial(
            CircuitBreaker,
            failure_threshold=failure_threshold,
            reset_timeout_s=reset_timeout_s,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            clock=clock,
            on_transition=on_transition,
            is_failure=is_failure,
        )
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._make(name)
            self._breakers[name] = breaker
        return breaker

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """Every breaker made so far, by name in sorted order, for `/status`."""
        return {name: self._breakers[name].snapshot() for name in sorted(self._breakers)}
