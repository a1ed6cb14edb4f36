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
    max_tokens: int | None = Field(default=None, ge=1, le=8192, description="cap on the answer's length")
    stream: bool = Field(default=False, description="answer as Server-Sent Events: sources, token..., done")
    use_cache: bool = Field(default=True, description="allow a cached answer (when a cache is configured)")


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
    trace_id: str | None = None

    @classmethod
    def from_answer(cls, a: Answer, request_id: str, trace_id: str | None = None) -> QueryResponse:
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
            trace_id=trace_id,
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


class UploadedDocumentPublic(DocumentWritePublic):
    filename: str = Field(description="the sanitised upload name, also the document's source")
    format: str = Field(description="the format sniffed from the content: pdf, docx, html, markdown, text, json, jsonl")


class FileErrorPublic(BaseModel):
    filename: str
    type: str
    message: str


class UploadCompleted(BaseModel):
    """201: a small upload, ingested before the response."""

    collection: str
    results: list[UploadedDocumentPublic]
    errors: list[FileErrorPublic]
    chunks: int
    request_id: str


class JobFilePublic(BaseModel):
    filename: str
    format: str
    size: int


class UploadAccepted(BaseModel):
    """202: a large upload, queued as a job; poll `status_url`."""

    job_id: str
    status_url: str
    state: Literal["queued", "running", "succeeded", "failed"]
    collection: str
    files: list[JobFilePublic]
    errors: list[FileErrorPublic]
    request_id: str


class JobProgressPublic(BaseModel):
    stage: Literal["queued", "parse", "ingest", "done"] = "queued"
    files_total: int = 0
    files_parsed: int = 0
    documents_total: int = 0
    documents_done: int = 0
    chunks_done: int = 0


class JobResultPublic(BaseModel):
    documents: list[UploadedDocumentPublic]
    chunks: int
    created: int
    updated: int
    unchanged: int


class JobPublic(BaseModel):
    id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    collection: str
    attempts: int
    files: list[JobFilePublic]
    progress: JobProgressPublic
    errors: list[FileErrorPublic]
    result: JobResultPublic | None
    error: str | None = Field(description="why the job as a whole failed")
    created_at: float
    started_at: float | None
    heartbeat_at: float | None
    finished_at: float | None


class ErrorDetail(BaseModel):
    type: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail
