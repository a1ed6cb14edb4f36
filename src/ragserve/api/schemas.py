"""Request and response bodies, named by role (`QueryRequest`, `DocumentPublic`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragserve.types import Answer, DocumentInfo, ScoredChunk

Scalar = str | int | float | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(Strict):
    query: str = Field(min_length=1, description="the question or search text")
    collection: str | None = Field(default=None, max_length=128)
    top_k: int | None = Field(default=None, ge=1, le=100)
    mode: Literal["dense", "keyword", "hybrid"] | None = None
    filters: dict[str, Scalar | list[Scalar]] | None = Field(
        default=None, description="metadata equality ({'k': v}) or membership ({'k': [v1, v2]})"
    )


class QueryRequest(SearchRequest):
    max_tokens: int | None = Field(default=None, ge=1, le=8192)


class SourcePublic(BaseModel):
    document_id: str
    chunk_id: int
    title: str | None
    source: str | None
    score: float
    text: str
    headings: list[str]
    page: int | None
    metadata: dict[str, Any]
    dense_rank: int | None
    keyword_rank: int | None

    @classmethod
    def from_chunk(cls, c: ScoredChunk) -> SourcePublic:
        return cls(
            document_id=c.document_id,
            chunk_id=c.chunk_id,
            title=c.title,
            source=c.source,
            score=c.score,
            text=c.text,
            headings=list(c.headings),
            page=c.page,
            metadata=c.metadata,
            dense_rank=c.dense_rank,
            keyword_rank=c.keyword_rank,
        )


class CitationPublic(BaseModel):
    number: int
    document_id: str
    chunk_id: int
    title: str | None
    source: str | None
    score: float
    snippet: str


class QueryResponse(BaseModel):
    answer: str
    answered: bool
    citations: list[CitationPublic]
    sources: list[SourcePublic]
    provider: str
    model: str
    cached: Literal["exact", "semantic", "none"]
    degraded: list[str]
    usage: dict[str, int]
    timings_ms: dict[str, float]
    request_id: str

    @classmethod
    def from_answer(cls, a: Answer, request_id: str) -> QueryResponse:
        return cls(
            answer=a.answer,
            answered=a.answered,
            citations=[CitationPublic.model_validate(c, from_attributes=True) for c in a.citations],
            sources=[SourcePublic.from_chunk(c) for c in a.sources],
            provider=a.provider,
            model=a.model,
            cached=a.cached,
            degraded=a.degraded,
            usage=a.usage,
            timings_ms=a.timings_ms,
            request_id=request_id,
        )


class SearchResponse(BaseModel):
    results: list[SourcePublic]
    mode: str
    timings_ms: dict[str, float]
    request_id: str


class DocumentCreate(Strict):
    id: str | None = Field(default=None, min_length=1, max_length=512)
    text: str = Field(min_length=1)
    title: str | None = Field(default=None, max_length=1000)
    source: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsCreate(Strict):
    collection: str | None = Field(default=None, max_length=128)
    documents: list[DocumentCreate] = Field(min_length=1, max_length=1000)


class DocumentWritePublic(BaseModel):
    id: str
    status: Literal["created", "updated", "unchanged"]
    version: int
    chunks: int


class DocumentsCreated(BaseModel):
    collection: str
    results: list[DocumentWritePublic]
    chunks: int
    request_id: str


class DocumentPublic(BaseModel):
    id: str
    version: int
    content_hash: str
    chunk_count: int
    title: str | None
    source: str | None
    metadata: dict[str, Any]
    created_at: float
    updated_at: float

    @classmethod
    def from_info(cls, info: DocumentInfo) -> DocumentPublic:
        return cls.model_validate(info, from_attributes=True)


class DocumentPage(BaseModel):
    collection: str
    documents: list[DocumentPublic]
    total: int
    limit: int
    offset: int


class DocumentDeleted(BaseModel):
    id: str
    deleted: bool
    request_id: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail
