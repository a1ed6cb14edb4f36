"""CircuitBreaker and BreakerRegistry driven by a fake clock: every transition, fail-fast, probes, hooks."""

from __future__ import annotations

import asyncio

import pytest

from ragserve.errors import CircuitOpenError, LLMBadRequestError, LLMUnavailableError
from ragserve.resilience.breaker import BreakerRegistry, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Transitions:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BreakerState, BreakerState]] = []

    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.seen.append((name, old, new))


def make(clock: FakeClock, hook: Transitions | None = None, **kwargs: int | float) -> CircuitBreaker:
    settings: dict[str, int | float] = {"failure_threshold": 3, "reset_timeout_s": 30.0, "success_threshold": 2}
    settings.update(kwargs)
    return CircuitBreaker("llm:a", clock=clock, on_transition=hook, **settings)  # type: ignore[arg-type]


async def succeed(breaker: CircuitBreaker) -> None:
    async with breaker.guard():
        pass


async def fail(breaker: CircuitBreaker, exc: BaseException | None = None) -> None:
    error = exc if exc is not None else LLMUnavailableError("down", provider="a")
    with pytest.raises(type(error)):
        async with breaker.guard():
            raise error


async def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        await fail(breaker)
    assert breaker.state is OPEN


def test_state_values_are_gauge_numbers_and_labels() -> None:
    assert [(s.value, s.label) for s in BreakerState] == [(0, "closed"), (1, "open"), (2, "half_open")]


async def test_consecutive_counted_failures_open_it_at_the_threshold() -> None:
    clock, hook = FakeClock(), Transitions()
    breaker = make(clock, hook)
    await fail(breaker)
    await fail(breaker)
    assert breaker.state is CLOSED
    assert hook.seen == []
    await fail(breaker)
    assert breaker.state is OPEN
    assert hook.seen == [("llm:a", CLOSED, OPEN)]


async def test_a_success_resets_the_count_so_only_consecutive_failures_open_it() -> None:
    breaker = make(FakeClock())
    for _ in range(4):
        await fail(breaker)
        await fail(breaker)
        await succeed(breaker)
    await fail(breaker)
    await fail(breaker)
    assert breaker.state is CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 2


async def test_open_fails_fast_with_retry_in_and_never_runs_the_call() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await open_breaker(breaker)
    clock.advance(10.0)
    ran = False
    with pytest.raises(CircuitOpenError) as caught:
        async with breaker.guard():
            ran = True
    assert not ran
    assert caught.value.dependency == "llm:a"
    assert caught.value.retry_in == pytest.approx(20.0)
    assert breaker.snapshot() == {
        "name": "llm:a",
        "state": "open",
        "consecutive_failures": 3,
        "opened_at": 0.0,
        "retry_in": pytest.approx(20.0),
        "probes_in_flight": 0,
    }


async def test_open_turns_half_open_once_the_reset_timeout_has_passed() -> None:
    clock, hook = FakeClock(), Transitions()
    breaker = make(clock, hook)
    await open_breaker(breaker)
    clock.advance(29.9)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot()["retry_in"] is None
    assert hook.seen == [("llm:a", CLOSED, OPEN), ("llm:a", OPEN, HALF_OPEN)]


async def test_half_open_admits_exactly_max_calls_concurrent_probes() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_max_calls=2)
    await open_breaker(breaker)
    clock.advance(30.0)
    release = asyncio.Event()
    entered: list[int] = []

    async def probe(i: int) -> None:
        async with breaker.guard():
            entered.append(i)
            await release.wait()

    probes = [asyncio.create_task(probe(i)) for i in range(2)]
    await asyncio.sleep(0)
    assert sorted(entered) == [0, 1]
    assert breaker.snapshot()["probes_in_flight"] == 2
    with pytest.raises(CircuitOpenError) as caught:
        # Bounded so that a third admitted probe fails the test instead of hanging it.
        await asyncio.wait_for(probe(2), timeout=1.0)
    assert caught.value.retry_in is None
    assert sorted(entered) == [0, 1]
    release.set()
    await asyncio.gather(*probes)
    assert breaker.state is CLOSED


async def test_a_probe_failure_reopens_it_and_restarts_the_timer() -> None:
    clock, hook = FakeClock(), Transitions()
    breaker = make(clock, hook)
    await open_breaker(breaker)
    clock.advance(35.0)
    await fail(breaker)
    assert breaker.state is OPEN
    snapshot = breaker.snapshot()
    assert snapshot["opened_at"] == 35.0
    assert snapshot["retry_in"] == pytest.approx(30.0)
    clock.advance(29.0)
    assert breaker.state is OPEN
    clock.advance(1.0)
    assert breaker.state is HALF_OPEN
    assert [(old, new) for _, old, new in hook.seen] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
    ]


async def test_success_threshold_probe_successes_close_it() -> None:
    clock, hook = FakeClock(), Transitions()
    breaker = make(clock, hook, success_threshold=3)
    await open_breaker(breaker)
    clock.advance(30.0)
    await succeed(breaker)
    await succeed(breaker)
    assert breaker.state is HALF_OPEN
    await succeed(breaker)
    assert breaker.state is CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 0
    assert breaker.snapshot()["opened_at"] is None
    assert [(old, new) for _, old, new in hook.seen] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    # Closed again means the full threshold is needed to reopen it.
    await fail(breaker)
    await fail(breaker)
    assert breaker.state is CLOSED


@pytest.mark.parametrize(
    "error",
    [LLMBadRequestError("bad", provider="a"), CircuitOpenError("other"), ValueError("bug"), asyncio.CancelledError()],
    ids=["bad-request", "circuit-open", "value-error", "cancelled"],
)
async def test_errors_that_say_nothing_about_health_do_not_open_it(error: BaseException) -> None:
    breaker = make(FakeClock())
    for _ in range(5):
        await fail(breaker, error)
    assert breaker.state is CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 0


async def test_a_non_counting_error_in_half_open_frees_the_probe_slot_and_keeps_the_state() -> None:
    clock, hook = FakeClock(), Transitions()
    breaker = make(clock, hook)
    await open_breaker(breaker)
    clock.advance(30.0)
    await fail(breaker, LLMBadRequestError("bad", provider="a"))
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot()["probes_in_flight"] == 0
    permit = breaker.before_call()
    assert permit.probe
    assert len(hook.seen) == 2


async def test_an_outcome_from_before_a_transition_is_ignored() -> None:
    clock = FakeClock()
    breaker = make(clock)
    slow = breaker.before_call()
    await open_breaker(breaker)
    clock.advance(30.0)
    probe = breaker.before_call()
    breaker.record_success(slow)
    breaker.record_failure(LLMUnavailableError("late"), slow)
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot()["probes_in_flight"] == 1
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.record_success(probe)
    assert breaker.snapshot()["probes_in_flight"] == 0


async def test_explicit_calls_for_streams_follow_the_same_rules() -> None:
    clock = FakeClock()
    breaker = make(clock, success_threshold=1)
    for _ in range(3):
        permit = breaker.before_call()
        assert not permit.probe
        breaker.record_failure(LLMUnavailableError("stream broke"), permit)
    assert breaker.state is OPEN
    clock.advance(30.0)
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is CLOSED


async def test_a_probe_that_never_reports_back_is_freed_after_the_reset_timeout() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await open_breaker(breaker)
    clock.advance(30.0)
    breaker.before_call()
    clock.advance(30.0)
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.advance(0.5)
    assert breaker.before_call().probe


async def test_a_failing_transition_hook_does_not_change_what_the_caller_sees() -> None:
    def broken(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("metrics backend gone")

    breaker = CircuitBreaker("llm:a", failure_threshold=1, clock=FakeClock(), on_transition=broken)
    await fail(breaker)
    assert breaker.state is OPEN


async def test_call_wraps_an_async_function() -> None:
    breaker = make(FakeClock(), failure_threshold=1)

    async def answer() -> int:
        return 42

    async def broken() -> int:
        raise LLMUnavailableError("down")

    assert await breaker.call(answer) == 42
    with pytest.raises(LLMUnavailableError):
        await breaker.call(broken)
    with pytest.raises(CircuitOpenError):
        await breaker.call(answer)


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"reset_timeout_s": -1.0}, {"half_open_max_calls": 0}, {"success_threshold": 0}],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BreakerRegistry(**kwargs)  # type: ignore[arg-type]


async def test_registry_makes_breakers_on_demand_with_shared_settings_and_snapshots_them() -> None:
    clock, hook = FakeClock(), Transitions()
    registry = BreakerRegistry(failure_threshold=1, reset_timeout_s=10.0, clock=clock, on_transition=hook)
    assert len(registry) == 0
    store = registry.get("store")
    assert registry.get("store") is store
    llm = registry.get("llm:openai")
    assert "store" in registry
    assert "embedder" not in registry
    assert {b.name for b in registry} == {"store", "llm:openai"}

    await fail(llm)
    assert hook.seen == [("llm:openai", CLOSED, OPEN)]
    clock.advance(4.0)
    snapshot = registry.snapshot()
    assert list(snapshot) == ["llm:openai", "store"]
    assert snapshot["llm:openai"]["state"] == "open"
    assert snapshot["llm:openai"]["retry_in"] == pytest.approx(6.0)
    assert snapshot["store"]["state"] == "closed"
    assert store.state.value == 0
    assert llm.state.value == 1
