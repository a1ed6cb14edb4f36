"""Request and response bodies, named by role (`QueryRequest`, `DocumentPublic`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ragserve.types import NAME_PATTERN, NON_BLANK, Answer, DocumentInfo, ScoredChunk

Scalar = str | int | float | bool


class Strict(BaseModel):
    """A request body: unknown fields and type coercions ("1" for 1, 0 for false) are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


CollectionName = Annotated[
    str, Field(pattern=NAME_PATTERN, description="letters, digits, '.', '_' or '-'; at most 128")
]


def json_integer(value: object) -> object:
    # JSON Schema's integer admits 5.0 but not "5" or true; pydantic's lax mode admits all three.
    if isinstance(value, str | bytes | bool):
        raise ValueError("must be an integer")
    return value


# Constraints live inside each alias: on `X | None` they must reach the integer branch of the schema.
TopK = Annotated[int, Field(strict=False, ge=1, le=100), BeforeValidator(json_integer)]
MaxTokens = Annotated[int, Field(strict=False, ge=1, le=8192), BeforeValidator(json_integer)]
FilterKey = Annotated[str, Field(min_length=1, max_length=256)]
FilterValues = Annotated[list[Scalar], Field(min_length=1, max_length=100)]
QueryText = Annotated[str, Field(min_length=1, pattern=NON_BLANK, description="the question or search text")]

ERROR_DESCRIPTIONS = {
    400: "the request is well-formed but unusable; the message says why",
    401: "no credentials, or credentials that are malformed, unknown, expired or revoked",
    402: "a monthly token or cost budget is spent",
    403: "valid credentials without the scope or collection this needs",
    404: "no such resource in this tenant's scope",
    413: "a body or file over its size limit",
    429: "over a rate limit; Retry-After says when to retry",
    415: "a file of a format that cannot be parsed",
    422: "the body or a parameter does not match the schema; the message names the field",
    500: "an unexpected error; the request id finds it in the log",
    503: "a dependency is unavailable; retry later",
    504: "the request ran out of time",
}
COMMON_ERRORS = (400, 401, 403, 413, 422, 429, 500, 503, 504)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, all with the one error body."""
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


class SearchRequest(Strict):
    query: QueryText
    collection: CollectionName | None = None
    top_k: TopK | None = None
    mode: Literal["dense", "keyword", "hybrid"] | None = None
    filters: dict[FilterKey, Scalar | FilterValues] | None = Field(
        default=None, description="metadata equality ({'k': v}) or membership ({'k': [v1, v2]})"
    )
    use_cache: bool = Field(default=True, description="allow a cached result; false neither reads nor fills caches")


class QueryRequest(SearchRequest):
    max_tokens: MaxTokens | None = Field(default=None, description="cap on the answer's length")
    stream: bool = Field(default=False, description="answer as Server-Sent Events: sources, token..., done")
    timeout_s: float | None = Field(
        default=None,
        ge=0.1,
        le=3600,
        description="this request's time budget in seconds (at most RAGSERVE_MAX_REQUEST_TIMEOUT_S)",
    )


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


class ProviderFailurePublic(BaseModel):
    provider: str
    error: str


class QueryResponse(BaseModel):
    answer: str
    answered: bool
    citations: list[CitationPublic]
    sources: list[SourcePublic]
    provider: str
    model: str
    cached: Literal["exact", "semantic", "none"]
    cache_similarity: float | None = Field(
        default=None, description="on a semantic hit, the cached question's similarity"
    )
    degraded: list[str]
    failures: list[ProviderFailurePublic] = Field(description="providers tried before the one that answered")
    warnings: list[str] = Field(description="no_citations: an answer citing nothing; invalid_citations")
    usage: dict[str, int]
    cost_usd: float | None = None
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
            cache_similarity=a.cache_similarity,
            degraded=a.degraded,
            failures=[ProviderFailurePublic(provider=f.provider, error=f.error) for f in a.failures],
            warnings=a.warnings,
            usage=a.usage,
            cost_usd=a.cost_usd,
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
    id: str | None = Field(default=None, min_length=1, max_length=512, pattern=NON_BLANK)
    text: str = Field(min_length=1, max_length=5_000_000, pattern=NON_BLANK)
    title: str | None = Field(default=None, max_length=1000)
    source: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsCreate(Strict):
    collection: CollectionName | None = None
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
