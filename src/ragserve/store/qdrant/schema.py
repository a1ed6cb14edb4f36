"""How ragserve lays out its data in Qdrant: collection names, payloads, point ids, filters.

One deployment and embedding model share two Qdrant collections, whatever the number of
tenants and collections: `{prefix}_{model}_{dim}` holds every chunk (a dense and a sparse
vector, payload for display and filters) and `{prefix}_{model}_{dim}_documents` holds the
records (no vectors): one per document (version, hash, timestamps...) and one marker per
ragserve collection. Tenant and collection are payload fields with keyword indexes, the
tenant one marked `is_tenant` so Qdrant keeps each tenant's points together; thousands of
small tenant collections would otherwise become thousands of Qdrant collections, each with
its own segments and memory overhead. A new model or dimension gets a new pair of
collections, so vectors of two models never mix, and switching back finds the old data.

Filters reuse the embedded store's tags (`key` + JSON value, in `sqlite_state`), so the
integer 5 and the string "5" stay apart in exactly the same way in both stores and a
metadata key may contain any character (a Qdrant payload path could not hold a dot).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from qdrant_client import models as qm

from ragserve.store import sqlite_state
from ragserve.types import Filters, Scope

DENSE = "dense"
SPARSE = "sparse"
DOCUMENT = "document"
COLLECTION = "collection"
# Namespace of the uuid5 ids of document and collection records.
_RECORDS = uuid.UUID("6f1e0c3a-55d1-4c8e-9a57-2b9c4c1d7e21")


def collection_names(prefix: str, model_name: str, dimension: int) -> tuple[str, str]:
    """The chunk collection and the record collection of one deployment and model."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")[:80] or "model"
    chunks = f"{prefix}_{slug}_{dimension}"
    return chunks, f"{chunks}_documents"


def document_point_id(scope: Scope, document_id: str) -> str:
    return str(uuid.uuid5(_RECORDS, f"{DOCUMENT}\x1f{scope.tenant}\x1f{scope.collection}\x1f{document_id}"))


def collection_point_id(scope: Scope) -> str:
    return str(uuid.uuid5(_RECORDS, f"{COLLECTION}\x1f{scope.tenant}\x1f{scope.collection}"))


def _match(key: str, value: str) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def scope_conditions(scope: Scope) -> list[qm.Condition]:
    return [_match("tenant", scope.tenant), _match("collection", scope.collection)]


def scope_filter(scope: Scope, *, kind: str | None = None) -> qm.Filter:
    conditions = scope_conditions(scope)
    if kind is not None:
        conditions.append(_match("kind", kind))
    return qm.Filter(must=conditions)


def kind_filter(kind: str, tenant: str | None = None) -> qm.Filter:
    conditions: list[qm.Condition] = [_match("kind", kind)]
    if tenant is not None:
        conditions.append(_match("tenant", tenant))
    return qm.Filter(must=conditions)


def document_filter(scope: Scope, document_id: str, keep: Sequence[int] = ()) -> qm.Filter:
    """Every chunk of the document, except those in `keep` (the version just written)."""
    return qm.Filter(
        must=[*scope_conditions(scope), _match("document_id", document_id)],
        must_not=[qm.HasIdCondition(has_id=list(keep))] if keep else None,
    )


def search_filter(scope: Scope, filters: Filters | None) -> qm.Filter:
    """The scope plus one "any of" condition on the tags per filter key, all pushed into the query."""
    conditions = scope_conditions(scope)
    for group in sqlite_state.filter_groups(filters):
        conditions.append(qm.FieldCondition(key="tags", match=qm.MatchAny(any=group)))
    return qm.Filter(must=conditions)


def chunk_indexes() -> dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams]:
    keyword = qm.PayloadSchemaType.KEYWORD
    return {
        "tenant": qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
        "collection": keyword,
        "document_id": keyword,
        "tags": keyword,
    }


def record_indexes() -> dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams]:
    keyword = qm.PayloadSchemaType.KEYWORD
    return {
        "tenant": qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
        "collection": keyword,
        "document_id": keyword,
        "kind": keyword,
    }


def chunk_vectors_config(dimension: int) -> dict[str, qm.VectorParams]:
    return {DENSE: qm.VectorParams(size=dimension, distance=qm.Distance.COSINE)}


def sparse_vectors_config() -> dict[str, qm.SparseVectorParams]:
    return {SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)}
