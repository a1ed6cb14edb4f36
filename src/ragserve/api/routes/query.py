"""POST /v1/query (answers with citations, whole or streamed) and POST /v1/search (retrieval only)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ragserve.api.access import AccessDep
from ragserve.api.deps import RagDep, RequestId, SettingsDep
from ragserve.api.observability import record_answer
from ragserve.api.schemas import (
    COMMON_ERRORS,
    QueryRequest,
    QueryResponse,
    SearchRequest,
    SearchResponse,
    SourcePublic,
    error_responses,
)
from ragserve.api.sse import SSE_HEADERS, encode_event, error_payload, event_schema
from ragserve.observability.metrics import get_metrics
from ragserve.observability.tracing import current_trace_id
from ragserve.types import Answer, QueryDone, QueryEvent, QuerySources, QueryToken

router = APIRouter(prefix="/v1", tags=["query"], responses=error_responses(*COMMON_ERRORS))

SSE_SCHEMA = event_schema("sources", "token", "done", "error")
STREAM_DOC = (
    "With `stream: true`: Server-Sent Events. `sources` (the retrieved chunks) first, then `token` events "
    '(`{"text"}`), then `done` (the answer, citations, usage and per-stage timings). A failure after the '
    'first event arrives as an `error` event (`{"error": {type, message, request_id, retryable}}`) and '
    "the stream ends."
)


@router.post(
    "/query",
    description="Answer a question from the collection's documents, with citations. " + STREAM_DOC,
    response_model=None,
    responses={200: {"model": QueryResponse, "content": {"text/event-stream": {"schema": SSE_SCHEMA}}}},
)
async def query(
    body: QueryRequest, access: AccessDep, rag: RagDep, request_id: RequestId, settings: SettingsDep, request: Request
) -> Response:
    scope = await access.scope("query", body.collection)
    options: dict[str, Any] = {
        "top_k": body.top_k,
        "mode": body.mode,
        "filters": body.filters,
        "max_tokens": body.max_tokens,
        "timeout_s": body.timeout_s,
        "use_cache": body.use_cache,
    }
    trace_id = current_trace_id()
    if not body.stream:
        answer = await rag.query(body.query, scope, **options)
        record_answer(request.state, settings, body.query, answer)
        await access.settle(answer)
        # Serialised once, straight from the model: FastAPI would validate it again first.
        return Response(
            QueryResponse.from_answer(answer, request_id, trace_id).model_dump_json(),
            media_type="application/json",
            headers={"X-Cache": x_cache(answer.cached)},
        )
    events = rag.query_stream(body.query, scope, **options)
    # Bad input fails here, before any event, so it still gets its 4xx status.
    first = await anext(events)

    async def on_done(answer: Answer) -> None:
        record_answer(request.state, settings, body.query, answer)
        await access.settle(answer)

    cached = first.cached if isinstance(first, QuerySources) else "none"
    return StreamingResponse(
        _sse(first, events, request_id, trace_id, on_done),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, "X-Cache": x_cache(cached)},
    )


def x_cache(cached: str) -> str:
    return "miss" if cached == "none" else f"hit-{cached}"


async def _sse(
    first: QueryEvent,
    rest: AsyncGenerator[QueryEvent, None],
    request_id: str,
    trace_id: str | None,
    on_done: Callable[[Answer], Awaitable[None]],
) -> AsyncIterator[bytes]:
    event: QueryEvent | None = first
    try:
        while event is not None:
            if isinstance(event, QuerySources):
                yield encode_event(
                    "sources",
                    {
                        "sources": [SourcePublic.from_chunk(c).model_dump() for c in event.sources],
                        "timings_ms": event.timings_ms,
                        "request_id": request_id,
                    },
                )
            elif isinstance(event, QueryToken):
                yield encode_event("token", {"text": event.text})
            elif isinstance(event, QueryDone):
                await on_done(event.answer)
                done = QueryResponse.from_answer(event.answer, request_id, trace_id).model_dump(exclude={"sources"})
                yield encode_event("done", done)
            event = await anext(rest, None)
    except Exception as exc:  # the status line is gone: the failure can only be an event now
        yield encode_event("error", error_payload(exc, request_id))
    finally:
        await rest.aclose()


@router.post("/search")
async def search(
    body: SearchRequest, access: AccessDep, rag: RagDep, request_id: RequestId, response: Response
) -> SearchResponse:
    result = await rag.search(
        body.query,
        await access.scope("query", body.collection),
        top_k=body.top_k,
        mode=body.mode,
        filters=body.filters,  # type: ignore[arg-type]
        use_cache=body.use_cache,
    )
    get_metrics().observe_stages(result.timings_ms)
    response.headers["X-Cache"] = "hit-exact" if result.cached else "miss"
    return SearchResponse(
        results=[SourcePublic.from_chunk(c) for c in result.chunks],
        mode=result.mode,
        timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        request_id=request_id,
    )
