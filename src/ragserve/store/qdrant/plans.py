"""What one write puts into Qdrant: the planned document versions, their chunk points and records.

A `Plan` is one document version the store decided to write (new, changed, or restored from
another store); `chunk_points` turns it into Qdrant points (dense vector, BM25 sparse vector,
the payload that search shows and filters on) and `record_of` into its document record.
Chunks carry their document's title, source and metadata, so a search needs no second lookup;
a new version always has new chunks, so the copies never go stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models as qm

from ragserve.store import sqlite_state
from ragserve.store.qdrant import schema
from ragserve.store.qdrant.sparse import SparseTerms, analyze, document_weights
from ragserve.types import DocumentWrite, Scope


@dataclass(slots=True)
class Plan:
    """One document version about to be written."""

    doc: DocumentWrite
    vectors: list[list[float]]
    bodies: list[SparseTerms]
    version: int
    created_at: float
    updated_at: float
    ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RestoredDocument:
    """A document copied from another store, with the version and timestamps it had there."""

    write: DocumentWrite
    version: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class State:
    content_hash: str
    version: int
    chunk_count: int
    created_at: float


def state_of(known: Plan | dict[str, Any] | None) -> State | None:
    """What a document is before this write: its planned version earlier in the call, or its record."""
    if known is None:
        return None
    if isinstance(known, Plan):
        return State(known.doc.content_hash, known.version, len(known.doc.chunks), known.created_at)
    return State(known["content_hash"], known["version"], known["chunk_count"], known["created_at"])


def bodies(doc: DocumentWrite) -> list[SparseTerms]:
    return [analyze(keyword_body(doc.title, c.headings, c.text)) for c in doc.chunks]


def keyword_body(title: str | None, headings: Sequence[str], text: str) -> str:
    """What the sparse vector indexes: title, headings and text, as the embedded store's BM25 does."""
    return "\n".join([*([title] if title else []), *headings, text])


def chunk_points(scope: Scope, plan: Plan, average_length: float) -> list[qm.PointStruct]:
    """The plan's chunks as points, under the ids already drawn into `plan.ids`."""
    doc = plan.doc
    tags = sqlite_state.document_tags(doc.id, doc.source, doc.metadata)
    points = []
    for chunk, vector, body, point_id in zip(doc.chunks, plan.vectors, plan.bodies, plan.ids, strict=True):
        indices, values = document_weights(body, average_length)
        payload = {
            "tenant": scope.tenant,
            "collection": scope.collection,
            "document_id": doc.id,
            "version": plan.version,
            "ordinal": chunk.ordinal,
            "text": chunk.text,
            "headings": list(chunk.headings),
            "page": chunk.page,
            "title": doc.title,
            "source": doc.source,
            "metadata": doc.metadata,
            "tags": tags,
        }
        sparse = qm.SparseVector(indices=indices, values=values)
        points.append(
            qm.PointStruct(id=point_id, vector={schema.DENSE: vector, schema.SPARSE: sparse}, payload=payload)
        )
    return points


def record_of(scope: Scope, plan: Plan) -> dict[str, Any]:
    doc = plan.doc
    return {
        "kind": schema.DOCUMENT,
        "tenant": scope.tenant,
        "collection": scope.collection,
        "document_id": doc.id,
        "version": plan.version,
        "content_hash": doc.content_hash,
        "chunk_count": len(doc.chunks),
        "title": doc.title,
        "source": doc.source,
        "metadata": doc.metadata,
        "created_at": plan.created_at,
        "updated_at": plan.updated_at,
        "terms": sum(b.length for b in plan.bodies),
    }
