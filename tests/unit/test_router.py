"""The router's own decisions, with in-process providers: order, weights, breakers, fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from itertools import cycle

import pytest

from ragserve.errors import ContextTooLongError, LLMBadRequestError, LLMUnavailableError
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.llm.extractive import ExtractiveAnswerer
from ragserve.llm.router import FallbackRouter, Route
from ragserve.resilience.breaker import BreakerState, CircuitBreaker
from ragserve.types import ChatTurn, ScoredChunk

SOURCES = [ScoredChunk(1, "port.md", "The server listens on port 8000 by default.", 0.1)]


class Scripted:
    """Answers or raises per call, from a list of outcomes (an exception or answer text)."""

    def __init__(self, name: str, *outcomes: str | Exception) -> None:
        self.name = name
        self.model = f"{name}-model"
        self.outcomes = list(outcomes)
        self.calls = 0

    def _next(self) -> str:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Generation:
        text = self._next()
        return Generation(text, [1], True, self.name, self.model, {"prompt_tokens": 5, "completion_tokens": 2})

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> AsyncIterator[StreamItem]:
        text = self._next()
        for word in text.split():
            yield TokenDelta(word + " ")
        yield Generation(text, [1], True, self.name, self.model)


def route(provider: Scripted, weight: float = 1.0, window: int = 8192, threshold: int = 3) -> Route:
    breaker = CircuitBreaker(f"llm:{provider.name}", failure_threshold=threshold, reset_timeout_s=60)
    return Route(provider, breaker, weight=weight, timeout_s=5, max_context_tokens=window)


def router(*routes: Route, draws: Sequence[float] = (0.0,), retries: int = 0) -> FallbackRouter:
    values = cycle(draws)
    return FallbackRouter(list(routes), ExtractiveAnswerer(), retries=retries, rng=lambda: next(values))


def test_weights_decide_which_healthy_provider_goes_first() -> None:
    a, b = route(Scripted("a", "x")), route(Scripted("b", "y"), weight=3.0)
    # Draws below 1/4 of the total weight pick a, the rest b; the other follows in configured order.
    assert [r.name for r in router(a, b, draws=[0.1]).order()] == ["a", "b"]
    assert [r.name for r in router(a, b, draws=[0.5]).order()] == ["b", "a"]
    zero = route(Scripted("z", "x"), weight=0.0)
    assert [r.name for r in router(zero, a, draws=[0.0]).order()] == ["a", "z"]


def test_an_open_breaker_is_not_drawn_first() -> None:
    a, b = route(Scripted("a", "x"), weight=100.0), route(Scripted("b", "y"))
    for _ in range(3):
        a.breaker.record_failure(LLMUnavailableError("down"))
    assert a.breaker.state is BreakerState.OPEN
    assert [r.name for r in router(a, b, draws=[0.0]).order()] == ["b", "a"]


async def test_falls_back_in_order_and_reports_who_failed() -> None:
    a = route(Scripted("a", LLMUnavailableError("a is down", provider="a")))
    b = route(Scripted("b", LLMBadRequestError("b refused", provider="b")))
    c = route(Scripted("c", "From c. [1]"))
    generation = await router(a, b, c).generate("Which port?", SOURCES)
    assert generation.provider == "c"
    assert generation.failures == [("a", "llm_unavailable"), ("b", "llm_bad_request")]
    assert generation.degraded == []


async def test_retries_stay_on_the_provider_for_retryable_errors_only() -> None:
    flaky = Scripted("a", LLMUnavailableError("blip"), "Recovered. [1]")
    generation = await router(route(flaky), retries=1).generate("Which port?", SOURCES)
    assert (generation.provider, flaky.calls) == ("a", 2)

    refusing = Scripted("a", LLMBadRequestError("no"))
    await router(route(refusing), retries=3).generate("Which port?", SOURCES)
    assert refusing.calls == 1  # a bad request is not retried


async def test_context_too_long_jumps_to_the_larger_windows_first() -> None:
    small = route(Scripted("small", ContextTooLongError("too long")), window=4096)
    medium = route(Scripted("medium", "From medium. [1]"), window=16_000)
    large = route(Scripted("large", "From large. [1]"), window=200_000)
    same = route(Scripted("same", "From same. [1]"), window=4096)
    generation = await router(small, same, large, medium, draws=[0.0]).generate("Which port?", SOURCES)
    assert generation.provider == "medium"  # the smallest window larger than the one that overflowed


async def test_everything_down_ends_in_the_extractive_answer() -> None:
    a = route(Scripted("a", LLMUnavailableError("down")))
    generation = await router(a).generate("Which port does the server listen on?", SOURCES)
    assert generation.provider == "extractive"
    assert generation.degraded == ["llm_unavailable"]
    assert "8000" in generation.text


async def test_stream_fails_over_before_the_first_token_and_not_after() -> None:
    a = route(Scripted("a", LLMUnavailableError("down before a word")))
    b = route(Scripted("b", "Port eight thousand. [1]"))
    items = [item async for item in router(a, b).stream("Which port?", SOURCES)]
    assert isinstance(items[-1], Generation) and items[-1].provider == "b"
    assert items[-1].failures == [("a", "llm_unavailable")]

    class BreaksMidway(Scripted):
        async def stream(self, *args: object, **kwargs: object) -> AsyncIterator[StreamItem]:
            yield TokenDelta("Port ")
            raise LLMUnavailableError("connection reset", provider=self.name)

    c = route(BreaksMidway("c", "unused"))
    d = route(Scripted("d", "never asked"))
    seen: list[StreamItem] = []
    with pytest.raises(LLMUnavailableError) as caught:
        async for item in router(c, d).stream("Which port?", SOURCES):
            seen.append(item)
    assert seen == [TokenDelta("Port ")]
    assert caught.value.provider == "c"
    assert d.provider.calls == 0  # type: ignore[attr-defined]
