"""POST /v1/query (answers with citations) and POST /v1/search (retrieval only)."""

from __future__ import annotations

from fastapi import APIRouter

from ragserve.api.deps import RagDep, RequestId
from ragserve.api.schemas import QueryRequest, QueryResponse, SearchRequest, SearchResponse, SourcePublic

router = APIRouter(prefix="/v1", tags=["query"])


@router.post("/query")
async def query(body: QueryRequest, rag: RagDep, request_id: RequestId) -> QueryResponse:
    answer = await rag.query(
        body.query,
        rag.scope(body.collection),
        top_k=body.top_k,
        mode=body.mode,
        filters=body.filters,  # type: ignore[arg-type]
        max_tokens=body.max_tokens,
    )
    return QueryResponse.from_answer(answer, request_id)


@router.post("/search")
async def search(body: SearchRequest, rag: RagDep, request_id: RequestId) -> SearchResponse:
    result = await rag.search(
        body.query,
        rag.scope(body.collection),
        top_k=body.top_k,
        mode=body.mode,
        filters=body.filters,  # type: ignore[arg-type]
    )
    return SearchResponse(
        results=[SourcePublic.from_chunk(c) for c in result.chunks],
        mode=result.mode,
        timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        request_id=request_id,
    )
