"""What the query path caches: keys that include everything that changes a result, and the values.

A key covers the tenant, the collection, the normalised query and every parameter that
can change the result (mode, top_k, filters, conversation, answer length, the generator
and its prompt version, the retrieval configuration). Values are JSON; a retrieval or an
answer is tagged with every document it used, so a write to one of them evicts it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ragserve.cache.base import document_tag
from ragserve.types import Answer, ChatTurn, Citation, Filters, ProviderFailure, Scope, ScoredChunk

_SPACES = re.compile(r"\s+")
KEY_VERSION = "v1"  # bump when the shape of cached values changes: old entries become unreachable


def normalise_query(text: str) -> str:
    """Case, spacing and trailing punctuation do not change what is asked."""
    return _SPACES.sub(" ", text).strip().casefold().rstrip("?!. ")


def _digest(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def retrieval_key(scope: Scope, query: str, *, mode: str, top_k: int, filters: Filters | None, config: str) -> str:
    parts = {"q": normalise_query(query), "mode": mode, "k": top_k, "filters": filters or {}, "config": config}
    return f"ret:{KEY_VERSION}:{scope.tenant}:{scope.collection}:{_digest(parts)}"


def answer_key(
    scope: Scope,
    query: str,
    *,
    mode: str,
    top_k: int,
    filters: Filters | None,
    max_tokens: int | None,
    history: Sequence[ChatTurn],
    generator: str,
    config: str,
) -> str:
    parts = {
        "q": normalise_query(query),
        "mode": mode,
        "k": top_k,
        "filters": filters or {},
        "max_tokens": max_tokens,
        "history": [(t.role, t.content) for t in history],
        "generator": generator,
        "config": config,
    }
    return f"ans:{KEY_VERSION}:{scope.tenant}:{scope.collection}:{_digest(parts)}"


def embedding_key(model: str, text: str) -> str:
    return f"emb:{model}:{hashlib.sha256(text.encode()).hexdigest()}"


def tags_for(scope: Scope, chunks: Sequence[ScoredChunk]) -> list[str]:
    return sorted({document_tag(scope.tenant, scope.collection, c.document_id) for c in chunks})


# ----------------------------------------------------------------- values


def chunk_to_json(c: ScoredChunk) -> dict[str, Any]:
    data = asdict(c)
    data["headings"] = list(c.headings)
    return data


def chunk_from_json(data: dict[str, Any]) -> ScoredChunk:
    return ScoredChunk(**{**data, "headings": tuple(data.get("headings", ()))})


def encode_chunks(chunks: Sequence[ScoredChunk]) -> bytes:
    return json.dumps([chunk_to_json(c) for c in chunks], separators=(",", ":")).encode()


def decode_chunks(raw: bytes) -> list[ScoredChunk]:
    return [chunk_from_json(item) for item in json.loads(raw)]


def encode_answer(answer: Answer) -> bytes:
    data = {
        "answer": answer.answer,
        "citations": [asdict(c) for c in answer.citations],
        "sources": [chunk_to_json(c) for c in answer.sources],
        "provider": answer.provider,
        "model": answer.model,
        "answered": answer.answered,
        "timings_ms": answer.timings_ms,
        "usage": answer.usage,
        "warnings": answer.warnings,
        "cost_usd": answer.cost_usd,
    }
    return json.dumps(data, separators=(",", ":")).encode()


def decode_answer(raw: bytes) -> Answer:
    """A cached answer, as it was when generated (its failures and degradations were not cached)."""
    data = json.loads(raw)
    return Answer(
        answer=data["answer"],
        citations=[Citation(**c) for c in data["citations"]],
        sources=[chunk_from_json(c) for c in data["sources"]],
        provider=data["provider"],
        model=data["model"],
        answered=data["answered"],
        timings_ms=data.get("timings_ms", {}),
        usage=data.get("usage", {}),
        warnings=data.get("warnings", []),
        cost_usd=data.get("cost_usd"),
        failures=list[ProviderFailure](),
    )
