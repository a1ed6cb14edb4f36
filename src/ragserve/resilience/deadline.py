"""A request's time budget, and a context variable that carries it to code deep in the call stack.

    deadline = Deadline(settings.request_timeout_s)
    with deadline_scope(deadline):
        ...
        # anywhere below, without threading it through signatures:
        d = current_deadline()
        timeout = d.cap(provider.timeout_s) if d is not None else provider.timeout_s

No deadline is expressed two ways: `current_deadline()` returns `None` outside any scope, and
`Deadline.unbounded()` is a deadline that never expires (`remaining()` is `math.inf`), for code that wants
one object to call either way. Callers handing `cap()` or `share()` to a library that takes `None` for
"no timeout" should map `math.inf` to `None`.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ragserve.errors import DeadlineExceededError


class Deadline:
    """`budget_s` seconds from the moment it is made, measured on `clock`."""

    __slots__ = ("_budget_s", "_clock", "_started_at")

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if math.isnan(budget_s) or budget_s < 0:
            raise ValueError(f"a deadline's budget must be a number >= 0, got {budget_s!r}")
        self._budget_s = float(budget_s)
        self._clock = clock
        self._started_at = clock()

    @classmethod
    def unbounded(cls, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """A deadline that never expires: `remaining()` is `math.inf`, `cap(x)` is `x`."""
        return cls(math.inf, clock)

    @property
    def budget_s(self) -> float:
        return self._budget_s

    @property
    def bounded(self) -> bool:
        return not math.isinf(self._budget_s)

    def elapsed(self) -> float:
        return self._clock() - self._started_at

    def remaining(self) -> float:
        return max(0.0, self._budget_s - self.elapsed())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def cap(self, seconds: float) -> float:
        """`seconds`, or what is left of the budget if that is less: a timeout for one call."""
        return min(seconds, self.remaining())

    def allows(self, seconds: float) -> bool:
        """Whether at least `seconds` are left, e.g. to decide if an optional stage is worth starting."""
        return self.remaining() >= seconds

    def share(self, fraction: float, *, at_most: float | None = None) -> float:
        """A stage's slice of what remains: `fraction` of it, capped at `at_most` seconds when given."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {fraction!r}")
        # inf * 0 is nan; a zero share of an unbounded budget is still zero.
        slice_s = 0.0 if fraction == 0.0 else self.remaining() * fraction
        return slice_s if at_most is None else min(slice_s, at_most)

    def check(self, stage: str) -> None:
        """Raise `DeadlineExceededError` naming `stage` if the budget is spent; call it between stages."""
        if self.expired:
            raise DeadlineExceededError(
                f"request deadline of {self._budget_s:g}s exceeded at {stage} ({self.elapsed():.3f}s elapsed)",
                stage=stage,
            )

    def __repr__(self) -> str:
        return f"Deadline(budget_s={self._budget_s:g}, remaining={self.remaining():.3f})"


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("ragserve_deadline", default=None)


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Make `deadline` what `current_deadline()` returns inside the block (and in tasks started there).

    Passing `None` clears an enclosing scope for the block. Scopes nest; leaving one restores the outer one.
    """
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline of the innermost `deadline_scope`, or `None` outside any."""
    return _current.get()
