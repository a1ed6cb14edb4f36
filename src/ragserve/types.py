"""Plain data that flows between the parts. No behaviour beyond validation helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ragserve.errors import InvalidInputError

# Some character that survives cleaning: not whitespace as Python strips it (str.isspace also
# counts U+001C-U+001F and U+0085, which JSON Schema's \s does not), not a control, zero-width
# or bidi character (the injection guard strips those from questions).
NON_BLANK = r"[^\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
# Tenant and collection names: safe in paths, URLs, metric-free logs and Qdrant collection names.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(value: str, what: str) -> str:
    """`value` if it is a valid tenant or collection name; InvalidInputError naming `what` otherwise."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInputError(
            f"{what} {value!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field=what,
        )
    return value


SearchMode = Literal["dense", "keyword", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("dense", "keyword", "hybrid")

# Metadata values we can index and filter on: JSON scalars.
MetadataValue = str | int | float | bool
Metadata = dict[str, Any]
# A filter maps a metadata key to one value (equality) or a list of values (any of).
Filters = dict[str, MetadataValue | list[MetadataValue]]


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a read or write happens: a tenant's collection. Every read path takes one."""

    tenant: str = "default"
    collection: str = "default"


@dataclass(slots=True)
class Section:
    """A run of text under one heading path, as a parser found it."""

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass(slots=True)
class ParsedDocument:
    """One document as a parser produced it, before chunking."""

    sections: list[Section]
    source: str
    title: str | None = None
    id: str | None = None  # given by the input itself (a JSON `_id`), else derived from `source`
    metadata: Metadata = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections if s.text)


@dataclass(slots=True)
class DocumentInput:
    """A document handed to the library as text (the JSON API, or code)."""

    text: str
    id: str | None = None
    title: str | None = None
    source: str | None = None
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document that fits the embedder's window."""

    text: str
    index: int
    token_count: int
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass(slots=True)
class ChunkRecord:
    """A chunk ready to be written: text, vector and what to show and filter on."""

    text: str
    ordinal: int
    vector: Any  # numpy float32 array of the embedder's dimension
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass(slots=True)
class DocumentWrite:
    """One document version to upsert, with all its chunks."""

    id: str
    content_hash: str
    chunks: list[ChunkRecord]
    title: str | None = None
    source: str | None = None
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: str
    version: int
    content_hash: str
    chunk_count: int
    title: str | None
    source: str | None
    metadata: Metadata
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class DocumentState:
    """What ingestion needs to know to skip an unchanged document."""

    content_hash: str
    version: int
    chunk_count: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    id: str
    status: Literal["created", "updated", "unchanged"]
    version: int
    chunk_count: int


@dataclass(slots=True)
class ScoredChunk:
    """A retrieved chunk. `score` is the fused score; the per-leg ranks say where it came from."""

    chunk_id: int
    document_id: str
    text: str
    score: float
    title: str | None = None
    source: str | None = None
    headings: tuple[str, ...] = ()
    page: int | None = None
    metadata: Metadata = field(default_factory=dict)
    dense_rank: int | None = None
    keyword_rank: int | None = None
    dense_score: float | None = None
    keyword_score: float | None = None


@dataclass(frozen=True, slots=True)
class FusionParams:
    """Weighted reciprocal rank fusion: score = sum(w / (k + rank))."""

    k: float = 60.0
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    candidates: int = 100  # per leg, before fusion


@dataclass(slots=True)
class StoreQuery:
    """What a VectorStore is asked. Either leg may be absent (mode decides which run)."""

    scope: Scope
    mode: SearchMode
    k: int
    vector: Any | None = None  # numpy float32, normalized
    text: str | None = None
    filters: Filters | None = None
    fusion: FusionParams = field(default_factory=FusionParams)
    mmr_lambda: float | None = None  # set to diversify the top k (1.0 = pure relevance)


@dataclass(frozen=True, slots=True)
class CollectionStats:
    documents: int
    chunks: int


@dataclass(frozen=True, slots=True)
class Citation:
    number: int
    document_id: str
    chunk_id: int
    title: str | None
    source: str | None
    score: float
    snippet: str


@dataclass(frozen=True, slots=True)
class ProviderFailure:
    """A provider that was tried and failed (or was skipped) before the answer came."""

    provider: str
    error: str  # an error type: "llm_timeout", "circuit_open", "skipped"...


@dataclass(slots=True)
class Answer:
    answer: str
    citations: list[Citation]
    sources: list[ScoredChunk]
    provider: str
    model: str
    answered: bool  # False when the generator said it does not know
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: Literal["exact", "semantic", "none"] = "none"
    degraded: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    failures: list[ProviderFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # "no_citations", "invalid_citations"
    cost_usd: float | None = None
    cache_similarity: float | None = None  # a semantic cache hit: how close the cached question was


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """An earlier message of a conversation: context for the generator, not the question."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(slots=True)
class QuerySources:
    """First event of a streamed answer: what was retrieved, and how long that took."""

    sources: list[ScoredChunk]
    timings_ms: dict[str, float]
    cached: Literal["exact", "semantic", "none"] = "none"


@dataclass(frozen=True, slots=True)
class QueryToken:
    text: str


@dataclass(slots=True)
class QueryDone:
    """Last event: the whole answer with citations, usage and per-stage timings."""

    answer: Answer


QueryEvent = QuerySources | QueryToken | QueryDone
