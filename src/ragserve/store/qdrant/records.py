"""Document and collection records: points without vectors in the store's second Qdrant collection.

A document's record (version, content hash, chunk count, title, source, metadata, timestamps)
is one point whose id is a uuid5 of (tenant, collection, document id), so finding, replacing
or deleting it is a lookup by id, never a search. Each ragserve collection has a marker point
too: `list_collections` reads the markers, `drop_collection` removes one, and it carries the
collection's running totals of chunks and chunk terms, the average chunk length BM25's length
normalisation needs. Keeping the records beside the chunks, in Qdrant itself, keeps the
deployment one service; a relational table would give transactions but add a second source of
truth to keep consistent with the chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient
from qdrant_client import models as qm

from ragserve.store.qdrant import schema
from ragserve.types import DocumentInfo, Scope

Record = dict[str, Any]


def document_info(record: Record) -> DocumentInfo:
    return DocumentInfo(
        id=record["document_id"],
        version=record["version"],
        content_hash=record["content_hash"],
        chunk_count=record["chunk_count"],
        title=record.get("title"),
        source=record.get("source"),
        metadata=record.get("metadata") or {},
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


class RecordBook:
    def __init__(self, client: AsyncQdrantClient, name: str) -> None:
        self._client = client
        self.name = name

    async def documents(self, scope: Scope, ids: Sequence[str]) -> dict[str, Record]:
        """The records of those of `ids` that exist in the scope, by document id."""
        found: dict[str, Record] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 1000):
            points = await self._client.retrieve(
                self.name,
                [schema.document_point_id(scope, i) for i in unique[start : start + 1000]],
                with_vectors=False,
            )
            found.update((p.payload["document_id"], p.payload) for p in points if p.payload)
        return found

    async def marker(self, scope: Scope) -> Record | None:
        points = await self._client.retrieve(self.name, [schema.collection_point_id(scope)], with_vectors=False)
        return points[0].payload if points else None

    async def save(self, scope: Scope, records: Sequence[Record], terms: int, chunks: int) -> None:
        """Write document records and the collection's marker with its new totals, in one request."""
        points = [
            qm.PointStruct(id=schema.document_point_id(scope, r["document_id"]), vector={}, payload=r) for r in records
        ]
        points.append(self._marker_point(scope, terms, chunks))
        await self._client.upsert(self.name, points, wait=True)

    async def remove(self, scope: Scope, document_id: str, record: Record) -> None:
        """Forget a deleted document and take its chunks and terms off the collection's totals."""
        marker = await self.marker(scope) or {"terms": 0, "chunks": 0}
        await self._client.batch_update_points(
            self.name,
            [
                qm.DeleteOperation(delete=qm.PointIdsList(points=[schema.document_point_id(scope, document_id)])),
                qm.UpsertOperation(
                    upsert=qm.PointsList(
                        points=[
                            self._marker_point(
                                scope,
                                max(marker["terms"] - record["terms"], 0),
                                max(marker["chunks"] - record["chunk_count"], 0),
                            )
                        ]
                    )
                ),
            ],
            wait=True,
        )

    async def drop(self, scope: Scope) -> None:
        await self._client.delete(self.name, schema.scope_filter(scope), wait=True)

    async def count(self, flt: qm.Filter) -> int:
        return (await self._client.count(self.name, count_filter=flt, exact=True)).count

    async def scroll(self, flt: qm.Filter, fields: Sequence[str]) -> AsyncIterator[Record]:
        offset: qm.ExtendedPointId | None = None
        while True:
            points, offset = await self._client.scroll(
                self.name, scroll_filter=flt, limit=1000, offset=offset, with_payload=list(fields), with_vectors=False
            )
            for point in points:
                if point.payload is not None:
                    yield point.payload
            if offset is None:
                return

    @staticmethod
    def _marker_point(scope: Scope, terms: int, chunks: int) -> qm.PointStruct:
        payload = {
            "kind": schema.COLLECTION,
            "tenant": scope.tenant,
            "collection": scope.collection,
            "terms": terms,
            "chunks": chunks,
            "updated_at": time.time(),
        }
        return qm.PointStruct(id=schema.collection_point_id(scope), vector={}, payload=payload)
