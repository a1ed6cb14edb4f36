"""OpenAI-compatible endpoints: any OpenAI SDK or tool can ask a collection questions.

`model` names a collection; the last user message is the question and the earlier turns
are its context. Citations ride along in an extra `citations` field.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ragserve.api.access import Access, AccessDep
from ragserve.api.deps import RagDep, RequestId, SettingsDep
from ragserve.api.observability import record_answer
from ragserve.api.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    CompletionUsage,
    ModelCard,
    ModelList,
    completion_chunk,
)
from ragserve.api.schemas import COMMON_ERRORS, CitationPublic, error_responses
from ragserve.api.sse import SSE_HEADERS, encode_event, error_payload, event_schema
from ragserve.errors import InvalidInputError, NotFoundError
from ragserve.rag import RAG
from ragserve.types import Answer, ChatTurn, QueryDone, QueryEvent, QuerySources, QueryToken, Scope

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(*COMMON_ERRORS, 404))


@router.get("/models", description="The collections this caller can ask, as OpenAI models.")
async def list_models(access: AccessDep, rag: RagDep) -> ModelList:
    access.require("query")
    caller = access.principal
    names = [name for name in await rag.collections(caller.tenant) if caller.may_use(name)]
    return ModelList(data=[ModelCard(id=name, owned_by=caller.tenant) for name in names])


@router.post(
    "/chat/completions",
    description="OpenAI chat completions over a collection (`model`), non-streamed or streamed.",
    response_model=None,
    responses={200: {"model": ChatCompletion, "content": {"text/event-stream": {"schema": event_schema()}}}},
)
async def chat_completions(
    body: ChatCompletionRequest,
    access: AccessDep,
    rag: RagDep,
    request_id: RequestId,
    settings: SettingsDep,
    request: Request,
) -> Any:
    question, history = conversation(body.messages)
    scope = await _collection_scope(access, rag, body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens
    completion_id = f"chatcmpl-{request_id}"
    created = int(time.time())
    if not body.stream:
        answer = await rag.query(question, scope, max_tokens=max_tokens, history=history)
        record_answer(request.state, settings, question, answer)
        await access.settle(answer)
        completion = ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[Choice(message=AssistantMessage(content=answer.answer))],
            usage=CompletionUsage.of(answer.usage),
            citations=[CitationPublic.model_validate(c, from_attributes=True) for c in answer.citations],
            provider=answer.provider,
        )
        return Response(completion.model_dump_json(), media_type="application/json")
    events = rag.query_stream(question, scope, max_tokens=max_tokens, history=history)
    first = await anext(events)  # bad input fails here, with its status code
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    async def on_done(answer: Answer) -> None:
        record_answer(request.state, settings, question, answer)
        await access.settle(answer)

    chunks = _chunks(first, events, completion_id, created, body.model, include_usage, request_id, on_done)
    return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)


def conversation(messages: list[ChatMessage]) -> tuple[str, list[ChatTurn]]:
    """The question (the last user message with text) and the turns before it, oldest first."""
    asked = next((i for i in reversed(range(len(messages))) if _is_question(messages[i])), None)
    if asked is None:
        raise InvalidInputError(
            "messages hold no user message with text: the last one is the question", field="messages"
        )
    history = []
    for message in messages[:asked]:
        text = message.text().strip()
        if text and message.role != "tool":
            role = "system" if message.role in ("system", "developer") else message.role
            history.append(ChatTurn(role, text))  # type: ignore[arg-type]
    return messages[asked].text().strip(), history


def _is_question(message: ChatMessage) -> bool:
    return message.role == "user" and bool(message.text().strip())


async def _collection_scope(access: Access, rag: RAG, model: str) -> Scope:
    scope = await access.scope("query", model)
    if model not in await rag.collections(scope.tenant):
        raise NotFoundError(f"model {model!r} not found: models are collections, GET /v1/models lists them")
    return scope


async def _chunks(
    first: QueryEvent,
    rest: AsyncGenerator[QueryEvent, None],
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
    request_id: str,
    on_done: Callable[[Answer], Awaitable[None]],
) -> AsyncIterator[bytes]:
    event: QueryEvent | None = first
    try:
        while event is not None:
            if isinstance(event, QuerySources):
                delta: dict[str, Any] = {"role": "assistant", "content": ""}
                yield encode_event(None, completion_chunk(completion_id, created, model, delta))
            elif isinstance(event, QueryToken):
                yield encode_event(None, completion_chunk(completion_id, created, model, {"content": event.text}))
            elif isinstance(event, QueryDone):
                await on_done(event.answer)
                citations = [
                    CitationPublic.model_validate(c, from_attributes=True).model_dump() for c in event.answer.citations
                ]
                last = completion_chunk(
                    completion_id,
                    created,
                    model,
                    {},
                    finish_reason="stop",
                    citations=citations,
                    provider=event.answer.provider,
                )
                yield encode_event(None, last)
                if include_usage:
                    usage = CompletionUsage.of(event.answer.usage).model_dump()
                    yield encode_event(None, completion_chunk(completion_id, created, model, None, usage=usage))
            event = await anext(rest, None)
        yield encode_event(None, "[DONE]")
    except Exception as exc:  # OpenAI's own form of a failure mid-stream: a chunk holding `error`
        yield encode_event(None, error_payload(exc, request_id))
    finally:
        await rest.aclose()
