"""The LLMProvider contract, run against every provider: one list of checks, one factory each.

Each check gets a `Subject`: the provider, plus a way to make its next answer a decline
(the extractive answerer declines an unanswerable question by itself; a model behind the
fake server is scripted to). The remote providers talk to a real `FakeLLMServer` through
their official SDKs. A new provider (the router, say) adds one factory to `FACTORIES`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest

from ragserve.llm.anthropic import AnthropicProvider
from ragserve.llm.base import Generation, LLMProvider, StreamItem, TokenDelta
from ragserve.llm.extractive import ExtractiveAnswerer
from ragserve.llm.openai_compat import OpenAICompatibleProvider
from ragserve.testing.fake_llm import FakeLLMServer, reply
from ragserve.types import ChatTurn, ScoredChunk

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTION = "Which port does the HTTP server listen on by default?"
UNANSWERABLE = "What is the refund policy for damaged goods?"
SOURCES = [
    ScoredChunk(
        1,
        "server",
        "The HTTP server listens on port 8000 by default. "
        "You can change the port with the RAGSERVE_PORT environment variable.",
        0.9,
        title="Server",
    ),
    ScoredChunk(2, "storage", "Documents and vectors are stored in a SQLite database in the data directory.", 0.5),
]
HISTORY = [ChatTurn("user", "What is ragserve?"), ChatTurn("assistant", "A retrieval-augmented service. [1]")]


@dataclass
class Subject:
    provider: LLMProvider
    decline_next: Callable[[], None]  # the next answer will be "I don't know"


Check = Callable[[Subject], Awaitable[None]]


async def collect(items: AsyncIterator[StreamItem]) -> tuple[list[TokenDelta], Generation]:
    """The deltas and the one final Generation of a stream; fails if the shape is wrong."""
    received = [item async for item in items]
    assert received, "a stream yields at least its Generation"
    *deltas, final = received
    assert isinstance(final, Generation), "the last item is the Generation"
    assert all(isinstance(d, TokenDelta) for d in deltas), "only TokenDeltas come before it"
    return [d for d in deltas if isinstance(d, TokenDelta)], final


def assert_cites_within(generation: Generation, sources: Sequence[ScoredChunk]) -> None:
    assert all(1 <= n <= len(sources) for n in generation.cited), generation.cited
    assert len(set(generation.cited)) == len(generation.cited)
    for n in generation.cited:
        assert f"[{n}]" in generation.text
    assert not set(generation.cited) & set(generation.invalid_citations)


# ------------------------------------------------------------------ checks


async def generate_answers_citing_given_sources(subject: Subject) -> None:
    generation = await subject.provider.generate(QUESTION, SOURCES)
    assert isinstance(generation, Generation)
    assert generation.answered
    assert generation.cited, "an answer from sources cites them"
    assert_cites_within(generation, SOURCES)
    assert generation.provider == subject.provider.name
    assert generation.model == subject.provider.model


async def stream_deltas_concatenate_to_the_text(subject: Subject) -> None:
    deltas, generation = await collect(subject.provider.stream(QUESTION, SOURCES))
    assert deltas, "an answer is streamed in pieces"
    assert "".join(d.text for d in deltas) == generation.text
    assert generation.answered
    assert_cites_within(generation, SOURCES)


async def a_decline_is_not_answered(subject: Subject) -> None:
    subject.decline_next()
    generation = await subject.provider.generate(UNANSWERABLE, SOURCES)
    assert not generation.answered
    assert generation.cited == []


async def a_streamed_decline_is_not_answered(subject: Subject) -> None:
    subject.decline_next()
    deltas, generation = await collect(subject.provider.stream(UNANSWERABLE, SOURCES))
    assert "".join(d.text for d in deltas) == generation.text
    assert not generation.answered


async def usage_counts_prompt_and_completion(subject: Subject) -> None:
    generation = await subject.provider.generate(QUESTION, SOURCES)
    assert generation.usage["prompt_tokens"] > 0
    assert generation.usage["completion_tokens"] > 0
    _, streamed = await collect(subject.provider.stream(QUESTION, SOURCES))
    assert streamed.usage["prompt_tokens"] > 0
    assert streamed.usage["completion_tokens"] > 0


async def no_sources_still_gives_a_generation(subject: Subject) -> None:
    generation = await subject.provider.generate(QUESTION, [])
    assert isinstance(generation, Generation)
    assert generation.cited == []
    deltas, streamed = await collect(subject.provider.stream(QUESTION, []))
    assert "".join(d.text for d in deltas) == streamed.text
    assert streamed.cited == []


async def history_and_max_tokens_are_accepted(subject: Subject) -> None:
    generation = await subject.provider.generate(QUESTION, SOURCES, max_tokens=64, history=HISTORY)
    assert generation.answered
    assert_cites_within(generation, SOURCES)
    _, streamed = await collect(subject.provider.stream(QUESTION, SOURCES, max_tokens=64, history=HISTORY))
    assert_cites_within(streamed, SOURCES)


async def it_satisfies_the_protocol(subject: Subject) -> None:
    assert isinstance(subject.provider, LLMProvider)
    assert subject.provider.name
    assert subject.provider.model


CONTRACT: list[Check] = [
    generate_answers_citing_given_sources,
    stream_deltas_concatenate_to_the_text,
    a_decline_is_not_answered,
    a_streamed_decline_is_not_answered,
    usage_counts_prompt_and_completion,
    no_sources_still_gives_a_generation,
    history_and_max_tokens_are_accepted,
    it_satisfies_the_protocol,
]


# ------------------------------------------------------------------ providers


def extractive(_: FakeLLMServer) -> Subject:
    return Subject(ExtractiveAnswerer(), decline_next=lambda: None)


def openai_compatible(server: FakeLLMServer) -> Subject:
    provider = OpenAICompatibleProvider(
        "openai-fake", base_url=server.openai_base_url, api_key="test-key", model="gpt-test", timeout_s=5
    )
    return Subject(provider, decline_next=lambda: server.script(reply("I don't know.")))


def anthropic(server: FakeLLMServer) -> Subject:
    provider = AnthropicProvider(
        "anthropic-fake", base_url=server.anthropic_base_url, api_key="test-key", model="claude-test", timeout_s=5
    )
    return Subject(provider, decline_next=lambda: server.script(reply("I don't know.")))


FACTORIES: dict[str, Callable[[FakeLLMServer], Subject]] = {
    "extractive": extractive,
    "openai": openai_compatible,
    "anthropic": anthropic,
}


@pytest.fixture(params=sorted(FACTORIES))
async def subject(request: pytest.FixtureRequest, fake_llm: FakeLLMServer) -> AsyncIterator[Subject]:
    built = FACTORIES[request.param](fake_llm)
    yield built
    close = getattr(built.provider, "aclose", None)
    if close is not None:
        await close()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__)
async def test_llm_contract(subject: Subject, check: Check) -> None:
    await check(subject)
