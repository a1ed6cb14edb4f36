"""Fault injection end to end: real HTTP to scripted model servers, through the configured router.

Two fake model servers play the primary (OpenAI protocol) and the secondary (Anthropic
protocol); the router is built from `RAGSERVE_LLM_PROVIDERS`-shaped settings, exactly as
the service builds it, and questions go through the HTTP API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sse_reader import parse_sse

from ragserve.api.app import create_app
from ragserve.build import build_breakers, build_generator
from ragserve.llm.router import FallbackRouter
from ragserve.rag import RAG
from ragserve.resilience.breaker import BreakerState
from ragserve.settings import Settings
from ragserve.testing.fake_llm import (
    FakeLLMServer,
    context_too_long,
    hang,
    random_failures,
    reply,
    status,
    stream_break_after,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
DOCS = [{"id": "port.md", "text": "The server listens on port 8000 by default. To change the port, set RAGSERVE_PORT."}]
QUESTION = "Which port does the server listen on?"


@pytest.fixture
def primary() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="primary-model") as server:
        yield server


@pytest.fixture
def secondary() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="secondary-model") as server:
        yield server


def providers(first_server: FakeLLMServer, second_server: FakeLLMServer, **overrides: Any) -> list[dict[str, Any]]:
    first = {
        "name": "primary",
        "kind": "openai",
        "base_url": first_server.openai_base_url,
        "api_key": "sk-test-primary",
        "model": "primary-model",
        "weight": 1.0,
        "timeout_s": 2.0,
        **overrides.get("primary", {}),
    }
    second = {
        "name": "secondary",
        "kind": "anthropic",
        "base_url": second_server.anthropic_base_url,
        "api_key": "sk-ant-test",
        "model": "secondary-model",
        "weight": 0.0,  # never drawn first: it is the fallback
        "timeout_s": 2.0,
        "max_context_tokens": 200_000,
        **overrides.get("secondary", {}),
    }
    return [first, second, {"name": "extractive", "kind": "extractive"}]


class Rig:
    def __init__(self, client: httpx.AsyncClient, router: FallbackRouter, collection: str) -> None:
        self.client = client
        self.router = router
        self.collection = collection

    async def ask(self, question: str = QUESTION, **extra: Any) -> httpx.Response:
        # Uncached: every ask reaches a model.
        body = {"query": question, "collection": self.collection, "use_cache": False, **extra}
        return await self.client.post("/v1/query", json=body)

    def breaker(self, name: str) -> BreakerState:
        route = next(r for r in self.router.routes if r.name == name)
        return route.breaker.state


@pytest.fixture
async def rig_factory(shared_rag: RAG, collection: str) -> AsyncIterator[Any]:
    original, original_breakers = shared_rag.generator, shared_rag.breakers
    apps: list[Any] = []

    async def make(settings_overrides: dict[str, Any]) -> Rig:
        # Validated like start-up validates RAGSERVE_LLM_PROVIDERS.
        settings = Settings.model_validate({**shared_rag.settings.model_dump(), **settings_overrides})
        shared_rag.breakers = build_breakers(settings)
        router = build_generator(settings, shared_rag.breakers)
        assert isinstance(router, FallbackRouter)
        shared_rag.generator = router
        app = create_app(shared_rag.settings, rag=shared_rag)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)
        apps.append((lifespan, client))
        r = await client.post("/v1/documents", json={"collection": collection, "documents": DOCS})
        assert r.status_code == 201, r.text
        return Rig(client, router, collection)

    yield make
    shared_rag.generator, shared_rag.breakers = original, original_breakers
    for lifespan, client in apps:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_primary_500s_fail_over_and_open_its_breaker(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(status(500))
    rig = await rig_factory(
        {
            "llm_providers": providers(primary, secondary),
            "llm_retries": 0,
            "breaker_failure_threshold": 3,
            "breaker_reset_s": 0.5,
        }
    )
    for _ in range(6):
        r = await rig.ask()
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["provider"] == "secondary"
        assert body["degraded"] == []
        assert body["failures"][0]["provider"] == "primary"
        assert "[1]" in body["answer"] and body["citations"][0]["document_id"] == "port.md"
    # Three failures opened the breaker; the other three requests never reached the primary.
    assert primary.calls(CHAT) == 3
    assert secondary.calls(MESSAGES) == 6
    assert rig.breaker("primary") is BreakerState.OPEN
    assert r.json()["failures"] == [{"provider": "primary", "error": "circuit_open"}]

    # After the reset timeout one half-open probe goes through; the primary has recovered.
    primary.set_default(reply("The server listens on port 8000. [1]"))
    await asyncio.sleep(0.6)
    r = await rig.ask()
    assert r.json()["provider"] == "primary"
    assert primary.calls(CHAT) == 4
    status_body = (await rig.client.get("/status")).json()
    assert status_body["circuits"]["llm:primary"]["state"] in ("half_open", "closed")


async def test_no_retry_storm_against_a_failing_provider(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(status(503))
    threshold = 4
    rig = await rig_factory(
        {
            "llm_providers": providers(primary, secondary),
            "llm_retries": 2,  # each attempt passes the breaker: retries cannot multiply the calls
            "breaker_failure_threshold": threshold,
            "breaker_reset_s": 60,
        }
    )
    for _ in range(20):
        assert (await rig.ask()).status_code == 200
    assert primary.calls(CHAT) <= threshold  # + 0 half-open probes within the reset timeout
    assert primary.calls(CHAT) == threshold


async def test_rate_limit_is_retried_after_the_providers_retry_after(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.script(status(429, retry_after=0.3), reply("Port 8000 is the default. [1]"))
    rig = await rig_factory({"llm_providers": providers(primary, secondary), "llm_retries": 1})
    started = time.perf_counter()
    r = await rig.ask()
    elapsed = time.perf_counter() - started
    assert r.json()["provider"] == "primary"
    assert primary.calls(CHAT) == 2
    assert secondary.calls(MESSAGES) == 0
    assert elapsed >= 0.3  # it waited as long as the provider asked


async def test_primary_timeout_is_answered_within_the_deadline_by_the_fallback(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(hang(30))
    rig = await rig_factory(
        {"llm_providers": providers(primary, secondary, primary={"timeout_s": 0.4}), "llm_retries": 0}
    )
    started = time.perf_counter()
    r = await rig.ask(timeout_s=3.0)
    elapsed = time.perf_counter() - started
    body = r.json()
    assert r.status_code == 200
    assert body["provider"] == "secondary"
    assert body["failures"] == [{"provider": "primary", "error": "llm_timeout"}]
    assert elapsed < 3.0


async def test_a_request_deadline_shorter_than_the_provider_timeout_wins(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(hang(30))
    secondary.set_default(hang(30))
    rig = await rig_factory({"llm_providers": providers(primary, secondary), "llm_retries": 2})
    started = time.perf_counter()
    r = await rig.ask(timeout_s=1.0)
    elapsed = time.perf_counter() - started
    body = r.json()
    assert r.status_code == 200
    assert body["provider"] == "extractive" and "8000" in body["answer"]
    assert body["degraded"] == ["llm_unavailable"]
    assert elapsed < 1.0 * 1.1


async def test_every_provider_down_gives_the_extractive_answer_flagged(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(status(500))
    secondary.set_default(status(529))
    rig = await rig_factory({"llm_providers": providers(primary, secondary), "llm_retries": 0})
    r = await rig.ask()
    body = r.json()
    assert r.status_code == 200
    assert body["provider"] == "extractive"
    assert body["degraded"] == ["llm_unavailable"]
    assert body["failures"] == [
        {"provider": "primary", "error": "llm_unavailable"},
        {"provider": "secondary", "error": "llm_unavailable"},
    ]
    assert "8000" in body["answer"]


async def test_a_prompt_too_long_goes_to_the_larger_window(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(context_too_long())
    rig = await rig_factory({"llm_providers": providers(primary, secondary), "llm_retries": 2})
    body = (await rig.ask()).json()
    assert body["provider"] == "secondary"
    assert body["failures"] == [{"provider": "primary", "error": "llm_context_too_long"}]
    assert primary.calls(CHAT) == 1  # not retried: it would not fit the second time either


async def test_stream_breaking_before_the_first_token_fails_over_unseen(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(stream_break_after(0))
    rig = await rig_factory({"llm_providers": providers(primary, secondary), "llm_retries": 0})
    r = await rig.ask(stream=True)
    events = parse_sse(r.text)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and "error" not in names
    done = events[-1][1]
    assert done["provider"] == "secondary"
    assert done["failures"] == [{"provider": "primary", "error": "llm_unavailable"}]
    assert "".join(d["text"] for n, d in events if n == "token") == done["answer"]


async def test_stream_breaking_after_the_first_token_ends_with_a_typed_error(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(stream_break_after(3))
    rig = await rig_factory({"llm_providers": providers(primary, secondary), "llm_retries": 0})
    r = await rig.ask(stream=True)
    assert r.status_code == 200
    events = parse_sse(r.text)
    names = [name for name, _ in events]
    assert names == ["sources", "token", "token", "token", "error"]
    error = events[-1][1]["error"]
    assert error["retryable"] is True
    assert error["provider"] == "primary"
    assert secondary.calls(MESSAGES) == 0  # never spliced a second answer onto the first


async def test_fifty_concurrent_requests_with_a_flaky_primary(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(random_failures(0.3, latency_s=0.05, seed=7))
    secondary.set_default(reply("The server listens on port 8000. [1]", latency_s=0.05))
    rig = await rig_factory(
        {
            "llm_providers": providers(primary, secondary, primary={"timeout_s": 1.0}),
            "llm_retries": 1,
            "breaker_failure_threshold": 1000,  # keep the primary in play: this is about failover under load
        }
    )
    deadline_s = 5.0

    async def one() -> tuple[int, float, str]:
        started = time.perf_counter()
        r = await rig.ask(timeout_s=deadline_s)
        return r.status_code, time.perf_counter() - started, r.json().get("provider", "")

    results = await asyncio.gather(*(one() for _ in range(50)))
    codes = [code for code, _, _ in results]
    latencies = sorted(seconds for _, seconds, _ in results)
    assert all(code == 200 for code in codes), codes
    assert latencies[-1] <= deadline_s * 1.1, latencies
    answered_by = {p for _, _, p in results}
    assert answered_by <= {"primary", "secondary"}
    print(
        f"\n50 concurrent, primary failing 30%: p50 {latencies[24] * 1000:.0f} ms, "
        f"p95 {latencies[47] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
        f"answered by {sorted(answered_by)}; primary calls {primary.calls(CHAT)}, "
        f"secondary calls {secondary.calls(MESSAGES)}"
    )


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_failures_fallbacks_and_breakers_show_in_metrics(
    rig_factory: Any, primary: FakeLLMServer, secondary: FakeLLMServer
) -> None:
    primary.set_default(status(500))
    rig = await rig_factory(
        {
            "llm_providers": providers(primary, secondary),
            "llm_retries": 0,
            "breaker_failure_threshold": 2,
            "llm_prices": {"secondary-model": {"prompt": 3.0, "completion": 15.0}},
        }
    )
    before = (await rig.client.get("/metrics")).text
    bodies = [(await rig.ask()).json() for _ in range(3)]
    after = (await rig.client.get("/metrics")).text

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("rag_llm_calls_total", provider="primary", outcome="llm_unavailable") == 2
    assert moved("rag_llm_calls_total", provider="secondary", outcome="ok") == 3
    assert metric(after, "rag_circuit_state", dependency="llm:primary") == 1  # open
    usage = [b["usage"] for b in bodies]
    assert moved("rag_llm_tokens_total", provider="secondary", kind="prompt") == sum(u["prompt_tokens"] for u in usage)
    expected_cost = sum(u["prompt_tokens"] * 3.0 + u["completion_tokens"] * 15.0 for u in usage) / 1e6
    assert moved("rag_cost_dollars_total", provider="secondary") == pytest.approx(expected_cost)
    assert bodies[0]["cost_usd"] == pytest.approx(
        (usage[0]["prompt_tokens"] * 3.0 + usage[0]["completion_tokens"] * 15.0) / 1e6
    )
    assert moved("rag_llm_latency_seconds_count", provider="secondary") == 3
