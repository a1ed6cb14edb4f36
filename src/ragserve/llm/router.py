"""The fallback router: itself an LLMProvider, it picks a healthy provider and falls back.

Order per request: one provider drawn by weight among those whose circuit breaker lets
calls through, then the others in configured order; a prompt too long for a model goes
next to the models with larger windows; the extractive answerer always ends the chain,
so an answer comes back while retrieval works. Each attempt passes its provider's
breaker (so a failing provider is called at most `failure_threshold` times before it is
left alone until its half-open probe), retries only retryable errors with jittered
backoff, and never runs past the request's deadline.

Streaming follows the same order until the first token; after it, a failure cannot be
hidden by switching providers, so it is raised for the caller to report.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from ragserve.errors import (
    CircuitOpenError,
    ContextTooLongError,
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    RagserveError,
)
from ragserve.llm.base import Generation, LLMProvider, StreamItem, TokenDelta
from ragserve.observability.metrics import get_metrics
from ragserve.resilience.breaker import BreakerState, CircuitBreaker
from ragserve.resilience.deadline import Deadline, current_deadline
from ragserve.resilience.retry import retry_async
from ragserve.types import ChatTurn, ScoredChunk

log = logging.getLogger(__name__)

# What the extractive answerer needs to finish once every remote provider is given up on.
FALLBACK_RESERVE_S = 0.05


@dataclass(slots=True)
class Route:
    """A configured provider and what the router needs to know about it."""

    provider: LLMProvider
    breaker: CircuitBreaker
    weight: float = 1.0
    timeout_s: float = 30.0
    max_context_tokens: int = 8192
    prices: tuple[float, float] | None = None  # $ per 1M prompt and completion tokens

    @property
    def name(self) -> str:
        return self.provider.name


@dataclass(slots=True)
class Failure:
    provider: str
    error: str  # the error type, e.g. "llm_timeout", "circuit_open"
    message: str


@dataclass(slots=True)
class _Attempt:
    failures: list[Failure] = field(default_factory=list)


class FallbackRouter:
    """Routes generation over `routes`, ending in `last` (the extractive answerer)."""

    name = "router"

    def __init__(
        self,
        routes: Sequence[Route],
        last: LLMProvider,
        *,
        retries: int = 1,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.routes = list(routes)
        self.last = last
        self.retries = retries
        self._rng = rng
        self._clock = clock

    @property
    def model(self) -> str:
        return self.routes[0].provider.model if self.routes else self.last.model

    # ------------------------------------------------------------- ordering

    def order(self) -> list[Route]:
        """One healthy route drawn by weight first, then every other route in configured order."""
        healthy = [r for r in self.routes if r.breaker.state is not BreakerState.OPEN and r.weight > 0]
        first: Route | None = None
        total = sum(r.weight for r in healthy)
        if total > 0:
            point = self._rng() * total
            for route in healthy:
                point -= route.weight
                if point < 0:
                    first = route
                    break
            first = first or healthy[-1]
        rest = [r for r in self.routes if r is not first]
        return [first, *rest] if first else rest

    def _larger_windows(self, than: Route, tried: set[str]) -> list[Route]:
        return sorted(
            (r for r in self.routes if r.max_context_tokens > than.max_context_tokens and r.name not in tried),
            key=lambda r: r.max_context_tokens,
        )

    # ----------------------------------------------------------- generate

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Generation:
        deadline = current_deadline()
        attempt = _Attempt()
        queue = self.order()
        tried: set[str] = set()
        while queue:
            route = queue.pop(0)
            if route.name in tried:
                continue
            tried.add(route.name)
            if not _time_left(deadline):
                attempt.failures.append(Failure(route.name, "skipped", "the request deadline left no time"))
                get_metrics().stage_skipped.labels(stage="generate", reason="deadline").inc()
                continue
            try:
                generation = await self._call(route, question, sources, max_tokens, history, deadline)
            except ContextTooLongError as exc:
                attempt.failures.append(_failure(route, exc))
                queue = [*self._larger_windows(route, tried), *queue]
                continue
            except (RagserveError, TimeoutError) as exc:
                attempt.failures.append(_failure(route, exc))
                continue
            generation.failures = [(f.provider, f.error) for f in attempt.failures]
            return generation
        generation = await self.last.generate(question, sources, max_tokens=max_tokens, history=history)
        generation.failures = [(f.provider, f.error) for f in attempt.failures]
        if self.routes:
            generation.degraded.append("llm_unavailable")
        return generation

    async def _call(
        self,
        route: Route,
        question: str,
        sources: Sequence[ScoredChunk],
        max_tokens: int | None,
        history: Sequence[ChatTurn],
        deadline: Deadline | None,
    ) -> Generation:
        async def once() -> Generation:
            async with route.breaker.guard():
                timeout = _cap(route.timeout_s, deadline)
                started = self._clock()
                try:
                    async with asyncio.timeout(timeout):
                        generation = await route.provider.generate(
                            question, sources, max_tokens=max_tokens, history=history
                        )
                except TimeoutError as exc:
                    self._observe(route, "timeout", self._clock() - started)
                    raise LLMTimeoutError(f"no answer within {timeout:.2f}s", provider=route.name) from exc
                except RagserveError as exc:
                    self._observe(route, exc.type, self._clock() - started)
                    raise
                self._observe(route, "ok", self._clock() - started, generation=generation)
                return generation

        return await retry_async(once, attempts=1 + self.retries, deadline=_reserve(deadline))

    # ------------------------------------------------------------- stream

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> AsyncIterator[StreamItem]:
        deadline = current_deadline()
        failures: list[Failure] = []
        queue = self.order()
        tried: set[str] = set()
        while queue:
            route = queue.pop(0)
            if route.name in tried:
                continue
            tried.add(route.name)
            if not _time_left(deadline):
                failures.append(Failure(route.name, "skipped", "the request deadline left no time"))
                get_metrics().stage_skipped.labels(stage="generate", reason="deadline").inc()
                continue
            try:
                permit = route.breaker.before_call()
            except CircuitOpenError as exc:
                failures.append(_failure(route, exc))
                continue
            started = self._clock()
            first_token: float | None = None
            settled = False
            stream = route.provider.stream(question, sources, max_tokens=max_tokens, history=history)
            try:
                timeout = _cap(route.timeout_s, deadline)
                async with asyncio.timeout(timeout):
                    async for item in stream:
                        if isinstance(item, TokenDelta):
                            if first_token is None:
                                first_token = self._clock() - started
                                get_metrics().llm_ttft.labels(provider=route.name).observe(first_token)
                            yield item
                        else:
                            item.failures = [(f.provider, f.error) for f in failures]
                            route.breaker.record_success(permit)
                            settled = True
                            self._observe(route, "ok", self._clock() - started, generation=item)
                            yield item
                            return
                raise LLMUnavailableError("the stream ended without an answer", provider=route.name)
            except (RagserveError, TimeoutError) as exc:
                error = (
                    LLMTimeoutError("the stream ran out of time", provider=route.name)
                    if isinstance(exc, TimeoutError)
                    else exc
                )
                route.breaker.record_failure(error, permit)
                settled = True
                self._observe(route, getattr(error, "type", "error"), self._clock() - started)
                if first_token is not None:
                    # Text already went out: switching providers would splice two answers.
                    raise _interrupted(route, error) from exc
                failures.append(_failure(route, error))
                if isinstance(error, ContextTooLongError):
                    queue = [*self._larger_windows(route, tried), *queue]
            finally:
                if not settled and first_token is not None:
                    # The consumer left mid-answer (a client hung up): the provider was answering fine.
                    route.breaker.record_success(permit)
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
        async for item in self.last.stream(question, sources, max_tokens=max_tokens, history=history):
            if isinstance(item, Generation):
                item.failures = [(f.provider, f.error) for f in failures]
                if self.routes:
                    item.degraded.append("llm_unavailable")
            yield item

    # -------------------------------------------------------------- metrics

    def _observe(self, route: Route, outcome: str, seconds: float, *, generation: Generation | None = None) -> None:
        metrics = get_metrics()
        metrics.llm_calls.labels(provider=route.name, outcome=outcome).inc()
        metrics.llm_latency.labels(provider=route.name).observe(seconds)
        if generation is None:
            return
        prompt = generation.usage.get("prompt_tokens", 0)
        completion = generation.usage.get("completion_tokens", 0)
        metrics.llm_tokens.labels(provider=route.name, kind="prompt").inc(prompt)
        metrics.llm_tokens.labels(provider=route.name, kind="completion").inc(completion)
        if route.prices is not None:
            cost = (prompt * route.prices[0] + completion * route.prices[1]) / 1_000_000
            generation.cost_usd = cost
            metrics.cost.labels(provider=route.name).inc(cost)


def _time_left(deadline: Deadline | None) -> bool:
    return deadline is None or deadline.allows(FALLBACK_RESERVE_S * 2)


def _reserve(deadline: Deadline | None) -> Deadline | None:
    """The deadline retries must respect: the request's, less what the fallback needs."""
    if deadline is None:
        return None
    return Deadline(max(deadline.remaining() - FALLBACK_RESERVE_S, 0.0))


def _cap(timeout_s: float, deadline: Deadline | None) -> float:
    if deadline is None:
        return timeout_s
    return max(min(timeout_s, deadline.remaining() - FALLBACK_RESERVE_S), 0.001)


def _failure(route: Route, exc: BaseException) -> Failure:
    if isinstance(exc, RagserveError):
        return Failure(route.name, exc.type, exc.message)
    if isinstance(exc, TimeoutError):
        return Failure(route.name, LLMTimeoutError.type, "timed out")
    return Failure(route.name, "error", str(exc))


def _interrupted(route: Route, exc: BaseException) -> LLMError:
    message = exc.message if isinstance(exc, RagserveError) else str(exc)
    error = LLMUnavailableError(f"{route.name} failed mid-answer: {message}", provider=route.name)
    return error
