"""The OpenAI-compatible endpoints, driven by the official `openai` SDK as the client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from asgi import serve

from ragserve.rag import RAG

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCS = [
    {"id": "port.md", "text": "The server listens on port 8000 by default. To change the port, set RAGSERVE_PORT."},
    {"id": "logging.md", "text": "To change the log level, set RAGSERVE_LOG_LEVEL."},
    {"id": "otters.md", "text": "Sea otters hold hands while they sleep so that they do not drift apart."},
]


@pytest.fixture
async def sdk(shared_rag: RAG, collection: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with serve(shared_rag.settings, shared_rag) as http:
        r = await http.post("/v1/documents", json={"collection": collection, "documents": DOCS})
        assert r.status_code == 201, r.text
        client = openai.AsyncOpenAI(base_url="http://test/v1", api_key="not-needed", http_client=http, max_retries=0)
        yield client


async def test_models_are_collections(sdk: openai.AsyncOpenAI, collection: str) -> None:
    models = [m.id async for m in sdk.models.list()]
    assert collection in models
    assert models == sorted(models)


async def test_chat_completion_answers_with_citations(sdk: openai.AsyncOpenAI, collection: str) -> None:
    completion = await sdk.chat.completions.create(
        model=collection,
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Why do sea otters hold hands?"},
        ],
        temperature=0.2,  # sampling options are accepted and ignored by the extractive answerer
    )
    assert completion.object == "chat.completion"
    assert completion.model == collection
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert "drift apart" in (choice.message.content or "")
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0
    citations = completion.model_extra["citations"]  # type: ignore[index]
    assert [c["document_id"] for c in citations] == ["otters.md"]


async def test_streamed_chat_completion_matches_the_whole_one(sdk: openai.AsyncOpenAI, collection: str) -> None:
    messages: list[dict[str, str]] = [{"role": "user", "content": "Which port does the server listen on?"}]
    whole = await sdk.chat.completions.create(model=collection, messages=messages)  # type: ignore[arg-type]
    stream = await sdk.chat.completions.create(
        model=collection,
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert "8000" in text
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert [c["document_id"] for c in finishing[0].model_extra["citations"]] == ["port.md"]  # type: ignore[index]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_earlier_turns_give_a_short_follow_up_its_subject(sdk: openai.AsyncOpenAI, collection: str) -> None:
    completion = await sdk.chat.completions.create(
        model=collection,
        messages=[
            {"role": "user", "content": "Which port does the server listen on?"},
            {"role": "assistant", "content": "Port 8000 [1]."},
            {"role": "user", "content": "How do I change it?"},
        ],
    )
    answer = completion.choices[0].message.content or ""
    assert "RAGSERVE_PORT" in answer
    assert "LOG_LEVEL" not in answer  # "it" is the port, not the log level


async def test_unknown_model_is_a_not_found_error(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(model="no-such-collection", messages=[{"role": "user", "content": "hi"}])
    assert "GET /v1/models" in caught.value.message


async def test_a_conversation_needs_a_user_question(sdk: openai.AsyncOpenAI, collection: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model=collection,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "hello"}],
        )
    assert "no user message" in caught.value.message
