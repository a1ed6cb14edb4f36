"""The OpenAI-compatible and Anthropic providers against a real fake server, through the real SDKs.

Every failure the server can be scripted to show must come out as the right `LLMError`,
named after the provider, after exactly one HTTP call (retries are the router's job).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from servers import free_port

from ragserve.errors import (
    ContextTooLongError,
    LLMBadRequestError,
    LLMError,
    LLMRateLimitedError,
    LLMTimeoutError,
    LLMUnavailableError,
)
from ragserve.llm.anthropic import CONVERSATION_OPENER, AnthropicProvider, anthropic_messages
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.llm.openai_compat import OpenAICompatibleProvider, retry_after_seconds
from ragserve.llm.prompt import PROMPT_VERSION, Prompt
from ragserve.testing.fake_llm import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    FakeLLMServer,
    Step,
    context_too_long,
    hang,
    malformed_json,
    reply,
    reset,
    status,
    stream_break_after,
    stream_error_after,
    stream_stall_after,
)
from ragserve.types import ChatTurn, ScoredChunk

pytestmark = pytest.mark.asyncio(loop_scope="session")

Provider = OpenAICompatibleProvider | AnthropicProvider
KINDS = ["openai", "anthropic"]
PATHS = {"openai": OPENAI_CHAT, "anthropic": ANTHROPIC_MESSAGES}
SOURCES = [
    ScoredChunk(1, "server", "The HTTP server listens on port 8000 by default.", 0.9, title="Server guide"),
    ScoredChunk(2, "env", "Set RAGSERVE_PORT to change the port.", 0.7),
    ScoredChunk(3, "storage", "Vectors are stored in SQLite.", 0.5),
]
QUESTION = "Which port does the server use?"
ANSWER = "The server listens on port 8000 by default [1]. You can change it [2][3]."


def make(kind: str, server: FakeLLMServer, **options: Any) -> Provider:
    options.setdefault("timeout_s", 5.0)
    if kind == "openai":
        return OpenAICompatibleProvider(
            "oa", base_url=server.openai_base_url, api_key="sk-test", model="gpt-test", **options
        )
    return AnthropicProvider(
        "an", base_url=server.anthropic_base_url, api_key="sk-ant-test", model="claude-test", **options
    )


@pytest.fixture(params=KINDS)
async def provider(request: pytest.FixtureRequest, fake_llm: FakeLLMServer) -> AsyncIterator[Provider]:
    built = make(request.param, fake_llm)
    yield built
    await built.aclose()


def path_of(provider: Provider) -> str:
    return OPENAI_CHAT if isinstance(provider, OpenAICompatibleProvider) else ANTHROPIC_MESSAGES


async def drain(provider: Provider, received: list[StreamItem] | None = None, **kwargs: Any) -> Generation:
    """Stream an answer, keeping what arrived in `received` even when the stream fails."""
    received = received if received is not None else []
    async for item in provider.stream(QUESTION, SOURCES, **kwargs):
        received.append(item)
    final = received[-1]
    assert isinstance(final, Generation)
    return final


Call = Callable[[Provider], Any]
CALLS: dict[str, Call] = {
    "generate": lambda p: p.generate(QUESTION, SOURCES),
    "stream": lambda p: drain(p),
}


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_rate_limited_carries_retry_after(provider: Provider, fake_llm: FakeLLMServer, call: str) -> None:
    fake_llm.script(status(429, retry_after=2))
    with pytest.raises(LLMRateLimitedError) as caught:
        await CALLS[call](provider)
    assert caught.value.retry_after == 2.0
    assert caught.value.provider == provider.name
    assert fake_llm.calls(path_of(provider)) == 1


@pytest.mark.parametrize("step", [status(500), status(503), status(529), reset()], ids=repr)
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_server_failures_are_unavailable(
    provider: Provider, fake_llm: FakeLLMServer, step: Step, call: str
) -> None:
    fake_llm.script(step)
    with pytest.raises(LLMUnavailableError) as caught:
        await CALLS[call](provider)
    assert caught.value.provider == provider.name
    assert caught.value.retryable


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_a_hung_server_times_out(fake_llm: FakeLLMServer, kind: str, call: str) -> None:
    provider = make(kind, fake_llm, timeout_s=0.3)
    fake_llm.script(hang(10))
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError) as caught:
        await CALLS[call](provider)
    assert time.monotonic() - started < 1.0
    assert caught.value.provider == provider.name
    await provider.aclose()


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_context_length_is_its_own_error(provider: Provider, fake_llm: FakeLLMServer, call: str) -> None:
    fake_llm.script(context_too_long())
    with pytest.raises(ContextTooLongError) as caught:
        await CALLS[call](provider)
    assert caught.value.provider == provider.name
    assert not caught.value.retryable


@pytest.mark.parametrize("step", [status(400), status(401), status(404)], ids=repr)
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_other_client_errors_are_bad_requests(
    provider: Provider, fake_llm: FakeLLMServer, step: Step, call: str
) -> None:
    fake_llm.script(step)
    with pytest.raises(LLMBadRequestError) as caught:
        await CALLS[call](provider)
    assert type(caught.value) is LLMBadRequestError
    assert not caught.value.retryable


async def test_a_broken_stream_keeps_what_was_sent(provider: Provider, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(stream_break_after(3))
    received: list[StreamItem] = []
    with pytest.raises(LLMUnavailableError, match="stream broke"):
        await drain(provider, received)
    assert len(received) == 3
    assert all(isinstance(item, TokenDelta) for item in received)


async def test_an_error_event_ends_the_stream(provider: Provider, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(stream_error_after(2))
    received: list[StreamItem] = []
    with pytest.raises(LLMUnavailableError) as caught:
        await drain(provider, received)
    assert len(received) == 2
    assert caught.value.provider == provider.name


async def test_an_anthropic_rate_limit_event_mid_stream(fake_llm: FakeLLMServer) -> None:
    provider = make("anthropic", fake_llm)
    fake_llm.script(stream_error_after(1, code=429))
    with pytest.raises(LLMRateLimitedError, match="rate_limit_error"):
        await drain(provider)
    await provider.aclose()


async def test_a_stalled_stream_times_out(fake_llm: FakeLLMServer) -> None:
    for kind in KINDS:
        provider = make(kind, fake_llm, timeout_s=0.3)
        fake_llm.script(stream_stall_after(2, 10))
        received: list[StreamItem] = []
        with pytest.raises(LLMTimeoutError):
            await drain(provider, received)
        assert len(received) == 2
        await provider.aclose()


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_malformed_json_is_unavailable(provider: Provider, fake_llm: FakeLLMServer, call: str) -> None:
    fake_llm.script(malformed_json())
    with pytest.raises(LLMUnavailableError, match="malformed"):
        await CALLS[call](provider)


@pytest.mark.parametrize("step", [status(500), status(429), reset()], ids=repr)
async def test_the_sdk_never_retries(provider: Provider, fake_llm: FakeLLMServer, step: Step) -> None:
    fake_llm.script(step)
    with pytest.raises(LLMError):
        await provider.generate(QUESTION, SOURCES)
    assert fake_llm.calls(path_of(provider)) == 1
    assert fake_llm.calls() == 1


async def test_a_prompt_that_cannot_fit_is_refused_before_calling(fake_llm: FakeLLMServer) -> None:
    for kind in KINDS:
        provider = make(kind, fake_llm, max_context_tokens=200, max_tokens=150)
        with pytest.raises(ContextTooLongError) as caught:
            await provider.generate(QUESTION, SOURCES)
        assert caught.value.provider == provider.name
        await provider.aclose()
    assert fake_llm.calls() == 0


async def test_connection_refused_is_unavailable() -> None:
    for kind in KINDS:
        with FakeLLMServer() as server:
            provider = make(kind, server)
        with pytest.raises(LLMUnavailableError, match="connection failed"):
            await provider.generate(QUESTION, SOURCES)
        await provider.aclose()


async def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after_seconds({"retry-after": later}) or 0) <= 30
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


async def test_an_http_date_retry_after(provider: Provider, fake_llm: FakeLLMServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    fake_llm.script(status(429, retry_after=later))
    with pytest.raises(LLMRateLimitedError) as caught:
        await provider.generate(QUESTION, SOURCES)
    assert 55 <= (caught.value.retry_after or 0) <= 60


# ------------------------------------------------------------------ the request


async def test_the_openai_request(fake_llm: FakeLLMServer) -> None:
    provider = make("openai", fake_llm, max_tokens=100)
    history = [ChatTurn("user", "What is ragserve?"), ChatTurn("assistant", "A RAG service. [1]")]
    await provider.generate(QUESTION, SOURCES, history=history)
    await drain(provider, max_tokens=42)
    await provider.aclose()
    plain, streamed = (r for r in fake_llm.requests if r.path == OPENAI_CHAT)
    assert plain.headers["authorization"] == "Bearer sk-test"
    body = plain.body
    assert body["model"] == "gpt-test"
    assert body["max_tokens"] == 100
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert "cite it with its number in square brackets" in body["messages"][0]["content"]
    assert body["messages"][1]["content"] == "What is ragserve?"
    last = body["messages"][-1]["content"]
    assert "[1] Server guide\nThe HTTP server listens on port 8000 by default." in last
    assert "[2]\nSet RAGSERVE_PORT" in last and "[3]\nVectors" in last
    assert last.endswith(f"Question: {QUESTION}")
    assert streamed.body["stream"] is True
    assert streamed.body["stream_options"] == {"include_usage": True}
    assert streamed.body["max_tokens"] == 42


async def test_the_anthropic_request(fake_llm: FakeLLMServer) -> None:
    provider = make("anthropic", fake_llm, max_tokens=100)
    history = [
        ChatTurn("system", "Answer in English."),
        ChatTurn("assistant", "Hello! Ask me anything."),
        ChatTurn("user", "What is ragserve?"),
        ChatTurn("user", "And who runs it?"),
        ChatTurn("assistant", "A RAG service. [1]"),
    ]
    await provider.generate(QUESTION, SOURCES, history=history)
    await provider.aclose()
    request = fake_llm.last(ANTHROPIC_MESSAGES)
    # This SDK sends the key as a bearer token; older ones as x-api-key.
    assert "sk-ant-test" in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:])
    assert request.headers["anthropic-version"]
    body = request.body
    assert body["model"] == "claude-test"
    assert body["max_tokens"] == 100
    assert "cite it with its number in square brackets" in body["system"]
    assert body["system"].endswith("Answer in English.")
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == CONVERSATION_OPENER
    assert messages[1]["content"] == "Hello! Ask me anything."
    assert messages[2]["content"] == "What is ragserve?\n\nAnd who runs it?"
    assert "[1] Server guide\n" in messages[-1]["content"]
    assert messages[-1]["content"].endswith(f"Question: {QUESTION}")


async def test_anthropic_turns_merge_into_the_last_user_turn() -> None:
    prompt = Prompt(
        system="rules",
        messages=[{"role": "user", "content": "earlier"}, {"role": "user", "content": "Sources: ..."}],
        sources=[],
        context_tokens=0,
    )
    system, messages = anthropic_messages(prompt)
    assert system == "rules"
    assert messages == [{"role": "user", "content": "earlier\n\nSources: ..."}]


async def test_the_default_reply_echoes_the_question(provider: Provider, fake_llm: FakeLLMServer) -> None:
    generation = await provider.generate(QUESTION, SOURCES)
    assert QUESTION in generation.text
    assert generation.cited == [1]


# ------------------------------------------------------------------ the answer


async def test_citations_are_parsed(provider: Provider, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(reply(ANSWER), reply(ANSWER))
    for generation in (await provider.generate(QUESTION, SOURCES), await drain(provider)):
        assert generation.text == ANSWER
        assert generation.cited == [1, 2, 3]
        assert generation.invalid_citations == []
        assert generation.answered
        assert generation.prompt_version == PROMPT_VERSION


async def test_invented_citations_are_reported(provider: Provider, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(reply("Port 8000 [1], says a source we never sent [7]."))
    generation = await provider.generate(QUESTION, SOURCES)
    assert generation.cited == [1]
    assert generation.invalid_citations == [7]


async def test_citations_follow_the_numbers_sent(fake_llm: FakeLLMServer) -> None:
    # Source 2 cannot fit and is dropped; [3] stays [3], and [2] now points at nothing.
    sources = [SOURCES[0], ScoredChunk(2, "big", " ".join(["unbroken"] * 3000), 0.6), SOURCES[2]]
    fake_llm.script(reply("Port 8000 [1][3], and [2]."))
    provider = make("openai", fake_llm, max_context_tokens=1200)
    generation = await provider.generate(QUESTION, sources)
    await provider.aclose()
    assert "unbroken" not in fake_llm.last().body["messages"][-1]["content"]
    assert generation.cited == [1, 3]
    assert generation.invalid_citations == [2]


async def test_usage_reported_by_the_server_is_used(provider: Provider, fake_llm: FakeLLMServer) -> None:
    usage = {"prompt_tokens": 321, "completion_tokens": 12}
    fake_llm.script(reply(ANSWER, usage=usage), reply(ANSWER, usage=usage))
    assert (await provider.generate(QUESTION, SOURCES)).usage == usage
    assert (await drain(provider)).usage == usage


async def test_a_decline_and_an_empty_answer_are_not_answers(provider: Provider, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(reply("I don't know."), reply(" "))
    for _ in range(2):
        generation = await provider.generate(QUESTION, SOURCES)
        assert not generation.answered
        assert generation.cited == []


# ------------------------------------------------------------------ the fake server itself


async def test_the_fake_server_runs_from_the_command_line() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ragserve.testing.fake_llm", "--port", str(port), "--fail-rate", "0.5", "--seed", "3"
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    models = await client.get("/v1/models")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, "the fake server exited"
                    assert time.monotonic() < deadline, "the fake server did not start"
                    await asyncio.sleep(0.1)
            assert models.json()["data"][0]["id"] == "fake-model"
            outcomes = set()
            for _ in range(20):
                try:
                    answer = await client.post(
                        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                    )
                    outcomes.add(answer.status_code)
                except httpx.TransportError:
                    outcomes.add(0)  # a reset, or a body cut in half
        assert 200 in outcomes and len(outcomes) > 1, outcomes
    finally:
        process.terminate()
        await process.wait()
