"""The Qdrant VectorStore: chunks with dense + BM25 sparse vectors, fused inside Qdrant.

Layout and filters are in `schema`, the BM25 weighting in `sparse`, document records in
`records`, chunk points in `plans`. Decisions that matter:

Chunk ids are random integers in [1, 2^53), checked against the live points before a write
and redrawn if taken. Qdrant has no atomic counter (a counter point would race between
processes, or need a lock Qdrant cannot give), and random ids need no coordination. 53 bits,
not 63, because chunk ids reach API clients as JSON numbers and JavaScript reads integers
exactly only up to 2^53. A new id could in principle equal a *deleted* one still held by a
cache; the chance for any given draw is (cached dead ids) / 2^53, and a stale cached answer
needs that for every one of its chunks, so the "never reused" promise of `live_chunks`
holds in practice without a registry of every id ever issued.

A write goes: new chunks, then deletion of every other chunk of the document, then the
document record, in that order, so a crash part-way leaves the old record (old hash) and the
next ingest of the document repairs it. Qdrant has no multi-point transactions: validation
happens before anything is written, but between the first and last step of an upsert a
reader can see both versions' chunks of a document (one request, so the window is short).
Concurrent writers of the *same* document may race on its version number.

Search (server-side fusion, per-leg ranks) is in `search`.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
from qdrant_client import AsyncQdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragserve.errors import InvalidInputError, StoreError
from ragserve.store.qdrant import schema
from ragserve.store.qdrant.plans import Plan, RestoredDocument, bodies, chunk_points, record_of, state_of
from ragserve.store.qdrant.records import RecordBook, document_info
from ragserve.store.qdrant.search import search_chunks
from ragserve.types import (
    CollectionStats,
    DocumentInfo,
    DocumentState,
    DocumentWrite,
    Scope,
    ScoredChunk,
    StoreQuery,
    WriteResult,
)

P = ParamSpec("P")
R = TypeVar("R")
_ID_SPACE = 2**53
_BATCH = 256


def _translated(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Qdrant's transport and response errors become StoreError, which breakers and the API understand."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise StoreError(f"qdrant: {exc}") from exc

    return run


def open_client(location: str, api_key: str | None = None) -> AsyncQdrantClient:
    """A client for ":memory:", an http(s) server URL, or a directory (Qdrant's local mode)."""
    if location == ":memory:":
        return AsyncQdrantClient(location=":memory:")
    if location.startswith(("http://", "https://")):
        return AsyncQdrantClient(url=location, api_key=api_key)
    # The store may be built on a worker thread (build_rag does) and then used on the event loop's
    # thread, one call at a time: safe for the local mode's SQLite, which only checks threads.
    return AsyncQdrantClient(path=location, force_disable_check_same_thread=True)


class QdrantVectorStore:
    def __init__(
        self,
        client: AsyncQdrantClient,
        dimension: int,
        model_name: str,
        *,
        prefix: str = "ragserve",
        shards: int = 1,
        replication: int = 1,
    ) -> None:
        self.dimension = dimension
        self._client = client
        self._chunks, records = schema.collection_names(prefix, model_name, dimension)
        self._records = RecordBook(client, records)
        self._shards = shards
        self._replication = replication
        self._ready_lock = asyncio.Lock()
        self._ready = False

    # ----------------------------------------------------------------- setup

    async def _ensure(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            await self._create(
                self._chunks,
                schema.chunk_indexes(),
                vectors_config=schema.chunk_vectors_config(self.dimension),
                sparse_vectors_config=schema.sparse_vectors_config(),
            )
            await self._create(self._records.name, schema.record_indexes(), vectors_config={})
            self._ready = True

    async def _create(
        self, name: str, indexes: dict[str, qm.PayloadSchemaType | qm.KeywordIndexParams], **config: Any
    ) -> None:
        if not await self._client.collection_exists(name):
            try:
                await self._client.create_collection(
                    name, shard_number=self._shards, replication_factor=self._replication, **config
                )
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # 409: another process created it first
                    raise
        with warnings.catch_warnings():
            # Local mode ignores payload indexes and says so; a server needs them for fast filters.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field, index in indexes.items():
                await self._client.create_payload_index(name, field, index)

    # ----------------------------------------------------------------- writes

    def _checked_vector(self, vector: object) -> npt.NDArray[np.float32]:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape[0] != self.dimension:
            raise InvalidInputError(f"vector has {array.shape[0]} dimensions, the store {self.dimension}")
        return array

    @_translated
    async def upsert(self, scope: Scope, documents: Sequence[DocumentWrite]) -> list[WriteResult]:
        vectors = [[self._checked_vector(c.vector).tolist() for c in d.chunks] for d in documents]
        await self._ensure()
        stored = await self._records.documents(scope, [d.id for d in documents])
        now = time.time()
        results: list[WriteResult] = []
        plans: dict[str, Plan] = {}
        for doc, doc_vectors in zip(documents, vectors, strict=True):
            # A document repeated in one call counts on from its earlier entry, as if written twice.
            state = state_of(plans[doc.id]) if doc.id in plans else state_of(stored.get(doc.id))
            if state is not None and state.content_hash == doc.content_hash:
                results.append(WriteResult(doc.id, "unchanged", state.version, state.chunk_count))
                continue
            version, created = (state.version + 1, state.created_at) if state is not None else (1, now)
            plans[doc.id] = Plan(doc, doc_vectors, bodies(doc), version, created, now)
            results.append(WriteResult(doc.id, "created" if state is None else "updated", version, len(doc.chunks)))
        await self._commit(scope, list(plans.values()), stored)
        return results

    @_translated
    async def restore(self, scope: Scope, documents: Sequence[RestoredDocument]) -> None:
        """Write documents as another store holds them: their versions and timestamps, their vectors.

        For copying a store (`ragserve migrate-store`); running it again replaces what it wrote.
        Chunk ids are new: a cached answer from the old store is then simply not live.
        """
        vectors = [[self._checked_vector(c.vector).tolist() for c in d.write.chunks] for d in documents]
        await self._ensure()
        if not documents:  # an empty collection still exists, and lists
            if await self._records.marker(scope) is None:
                await self._records.save(scope, [], 0, 0)
            return
        stored = await self._records.documents(scope, [d.write.id for d in documents])
        plans = {
            d.write.id: Plan(d.write, v, bodies(d.write), d.version, d.created_at, d.updated_at)
            for d, v in zip(documents, vectors, strict=True)
        }
        await self._commit(scope, list(plans.values()), stored)

    async def _commit(self, scope: Scope, plans: list[Plan], stored: dict[str, dict[str, Any]]) -> None:
        """Write the planned versions, then their records with the collection's new term totals."""
        if not plans:
            return
        marker = await self._records.marker(scope)
        terms_total, chunks_total = (marker["terms"], marker["chunks"]) if marker else (0, 0)
        for plan in plans:
            if plan.doc.id in stored:
                terms_total -= stored[plan.doc.id]["terms"]
                chunks_total -= stored[plan.doc.id]["chunk_count"]
        terms_total += sum(b.length for p in plans for b in p.bodies)
        chunks_total += sum(len(p.bodies) for p in plans)
        await self._write(scope, plans, terms_total / max(chunks_total, 1))
        await self._records.save(scope, [record_of(scope, p) for p in plans], terms_total, chunks_total)

    async def _write(self, scope: Scope, plans: list[Plan], average_length: float) -> None:
        ids = iter(await self._new_ids(sum(len(p.bodies) for p in plans)))
        points: list[qm.PointStruct] = []
        for plan in plans:
            plan.ids = [next(ids) for _ in plan.bodies]
            points += chunk_points(scope, plan, average_length)
        operations: list[qm.UpdateOperation] = [
            qm.UpsertOperation(upsert=qm.PointsList(points=points[i : i + _BATCH]))
            for i in range(0, len(points), _BATCH)
        ]
        operations += [
            qm.DeleteOperation(delete=qm.FilterSelector(filter=schema.document_filter(scope, p.doc.id, p.ids)))
            for p in plans
        ]
        await self._client.batch_update_points(self._chunks, operations, wait=True)

    async def _new_ids(self, count: int) -> list[int]:
        """`count` distinct random ids that no live chunk holds (see the module docstring)."""
        chosen: set[int] = set()
        while len(chosen) < count:
            draw = {secrets.randbelow(_ID_SPACE - 1) + 1 for _ in range(count - len(chosen))} - chosen
            draw_list = list(draw)
            for start in range(0, len(draw_list), 1000):
                part = draw_list[start : start + 1000]
                taken = await self._client.retrieve(self._chunks, part, with_payload=False, with_vectors=False)
                draw -= {int(p.id) for p in taken}
            chosen |= draw
        return list(chosen)

    @_translated
    async def delete(self, scope: Scope, document_id: str) -> bool:
        await self._ensure()
        record = (await self._records.documents(scope, [document_id])).get(document_id)
        if record is None:
            return False
        await self._client.delete(self._chunks, schema.document_filter(scope, document_id), wait=True)
        await self._records.remove(scope, document_id, record)
        return True

    @_translated
    async def drop_collection(self, scope: Scope) -> bool:
        await self._ensure()
        if await self._records.marker(scope) is None:
            return False
        await self._client.delete(self._chunks, schema.scope_filter(scope), wait=True)
        await self._records.drop(scope)
        return True

    # ------------------------------------------------------------------ search

    @_translated
    async def search(self, query: StoreQuery) -> list[ScoredChunk]:
        if query.mode == "dense" and query.vector is None:
            raise InvalidInputError("dense search needs a query vector")
        vector = self._checked_vector(query.vector) if query.mode != "keyword" and query.vector is not None else None
        await self._ensure()
        return await search_chunks(self._client, self._chunks, query, vector)

    # ----------------------------------------------------------------- lookups

    @_translated
    async def document_states(self, scope: Scope, ids: Sequence[str]) -> dict[str, DocumentState]:
        if not ids:
            return {}
        await self._ensure()
        found = await self._records.documents(scope, list(dict.fromkeys(ids)))
        return {i: DocumentState(r["content_hash"], r["version"], r["chunk_count"]) for i, r in found.items()}

    @_translated
    async def get_document(self, scope: Scope, document_id: str) -> DocumentInfo | None:
        await self._ensure()
        record = (await self._records.documents(scope, [document_id])).get(document_id)
        return None if record is None else document_info(record)

    @_translated
    async def list_documents(self, scope: Scope, *, limit: int = 50, offset: int = 0) -> tuple[list[DocumentInfo], int]:
        await self._ensure()
        ids = sorted(
            [
                r["document_id"]
                async for r in self._records.scroll(schema.scope_filter(scope, kind=schema.DOCUMENT), ["document_id"])
            ]
        )
        page = ids[offset : offset + limit]
        found = await self._records.documents(scope, page)
        return [document_info(found[i]) for i in page if i in found], len(ids)

    @_translated
    async def stats(self, scope: Scope) -> CollectionStats:
        await self._ensure()
        docs = await self._records.count(schema.scope_filter(scope, kind=schema.DOCUMENT))
        chunks = await self._client.count(self._chunks, count_filter=schema.scope_filter(scope), exact=True)
        return CollectionStats(docs, chunks.count)

    @_translated
    async def totals(self) -> CollectionStats:
        await self._ensure()
        docs = await self._records.count(schema.kind_filter(schema.DOCUMENT))
        chunks = await self._client.count(self._chunks, exact=True)
        return CollectionStats(docs, chunks.count)

    @_translated
    async def live_chunks(self, scope: Scope, chunk_ids: Sequence[int]) -> set[int]:
        wanted = sorted({int(i) for i in chunk_ids if 0 < int(i) < _ID_SPACE})
        if not wanted:
            return set()
        await self._ensure()
        live: set[int] = set()
        for start in range(0, len(wanted), 1000):
            points = await self._client.retrieve(
                self._chunks, wanted[start : start + 1000], with_payload=["tenant", "collection"], with_vectors=False
            )
            live.update(
                int(p.id)
                for p in points
                if p.payload and (p.payload["tenant"], p.payload["collection"]) == (scope.tenant, scope.collection)
            )
        return live

    @_translated
    async def list_collections(self, tenant: str) -> list[str]:
        await self._ensure()
        flt = schema.kind_filter(schema.COLLECTION, tenant)
        return sorted([r["collection"] async for r in self._records.scroll(flt, ["collection"])])

    async def ping(self) -> None:
        try:
            await self._client.collection_exists(self._chunks)
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise StoreError(f"qdrant unavailable: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.close()
