"""The embedded VectorStore: SQLite (truth) + Tantivy (BM25) + HNSW (dense), in one data directory.

Several processes may share the directory. Writers are serialised by an inter-process
lock and apply their own changes to the shared Tantivy index before releasing it; every
process replays the change log into its in-memory HNSW graphs. A read pins one SQLite
snapshot and searches only when both derived indexes reflect exactly that snapshot, so a
reader sees each document either before or after a write, never half of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from ragserve.errors import ConfigurationError, InvalidInputError, StoreError
from ragserve.observability.tracing import stage_span
from ragserve.retrieve.fusion import maximal_marginal_relevance, reciprocal_rank_fusion
from ragserve.store import sqlite_state as db
from ragserve.store import writer
from ragserve.store.ann import CollectionGraph, HnswParams
from ragserve.store.keyword import KeywordDoc, TantivyKeywordIndex
from ragserve.store.liveness import LiveMemo
from ragserve.store.locks import InterProcessLock, ReadWriteLock
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

log = logging.getLogger(__name__)
T = TypeVar("T")
# Below this many allowed chunks a filtered dense query is answered exactly, without the graph.
EXACT_FILTER_LIMIT = 4096
_READ_ATTEMPTS = 8


class _Stale(Exception):
    """A derived index moved past this read's snapshot; take a newer snapshot."""


class EmbeddedVectorStore:
    def __init__(self, data_dir: Path, dimension: int, model_name: str, hnsw: HnswParams | None = None) -> None:
        self.dimension = dimension
        self._hnsw = hnsw or HnswParams()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._ann_dir = data_dir / "ann"
        self._ann_dir.mkdir(exist_ok=True)
        self._write_lock = InterProcessLock(data_dir / "write.lock")
        self._conns = db.Connections(data_dir / "ragserve.sqlite3")
        self._graph_lock = ReadWriteLock()
        self._graphs: dict[int, CollectionGraph] = {}
        self._dense_seq = 0
        self._saved_seq = 0
        self._live = LiveMemo()
        try:
            with self._write_lock.hold():
                self._migrate(model_name)
                self._keyword = TantivyKeywordIndex(data_dir / "tantivy")
                self._catch_up_keyword(self._conns.get(), db.max_seq(self._conns.get()))
            self._load_graphs()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store in {data_dir}: {exc}") from exc

    # ----------------------------------------------------------------- setup

    def _migrate(self, model_name: str) -> None:
        conn = self._conns.get()
        conn.executescript(db.SCHEMA)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        expected = {"schema": db.SCHEMA_VERSION, "dimension": str(self.dimension), "model": model_name}
        if not meta:
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", expected.items())
            return
        for key, want in expected.items():
            if meta.get(key) != want:
                raise ConfigurationError(
                    f"the data directory was built with {key}={meta.get(key)!r} but this configuration "
                    f"uses {want!r}; use another RAGSERVE_DATA_DIR or re-ingest into a fresh one"
                )

    def _load_graphs(self) -> None:
        conn = self._conns.get()
        conn.execute("BEGIN")
        try:
            upto = db.max_seq(conn)
            for (cid,) in conn.execute("SELECT id FROM collections").fetchall():
                self._graphs[cid] = self._load_graph(conn, cid, upto)
        finally:
            conn.execute("COMMIT")
        self._dense_seq = self._saved_seq = upto

    def _load_graph(self, conn: sqlite3.Connection, cid: int, upto: int) -> CollectionGraph:
        loaded = CollectionGraph.load(self._ann_dir / f"c{cid}.hnsw", self.dimension, self._hnsw)
        if loaded is not None and loaded[1] <= upto:
            graph, seq = loaded
            for change in db.changes_between(conn, seq, upto):
                if change.collection_id == cid:
                    self._apply_dense(conn, graph, change)
            expected = conn.execute("SELECT count(*) FROM chunks WHERE collection_id = ?", (cid,)).fetchone()
            if graph.live == expected[0]:
                return graph
            log.warning("HNSW snapshot of collection %s disagrees with SQLite; rebuilding", cid)
        graph = CollectionGraph(self.dimension, self._hnsw)
        for ids, blobs in db.iter_chunk_vectors(conn, cid, 0, 2**62):
            graph.add(np.asarray(ids, dtype=np.int64), _vectors(blobs, self.dimension))
        return graph

    # ---------------------------------------------------------- derived state

    def _catch_up_keyword(self, conn: sqlite3.Connection, upto: int) -> None:
        """Bring Tantivy to `upto`. Caller holds the write lock (Tantivy allows one writer)."""
        seq = self._keyword.refresh()
        if seq > db.max_seq(conn):
            log.warning("keyword index is ahead of SQLite (%s); rebuilding it", seq)
            self._keyword.reset()
            seq = 0
        if seq >= upto:
            return
        changes = db.changes_between(conn, seq, upto)
        adds = [(c.collection_id, c.low, c.high) for c in changes if c.op == "add"]
        deletes = [(c.low, c.high) for c in changes if c.op == "del"]
        drops = [c.collection_id for c in changes if c.op == "drop"]
        self._keyword.apply(upto, self._keyword_docs(conn, adds), deletes, drops)
        self._keyword.refresh()

    def _keyword_docs(self, conn: sqlite3.Connection, ranges: list[tuple[int, int, int]]) -> Iterator[KeywordDoc]:
        for cid, low, high in ranges:
            rows = conn.execute(
                "SELECT c.id, c.doc_id, c.text, c.headings, d.title FROM chunks c "
                "JOIN documents d ON d.collection_id = c.collection_id AND d.doc_id = c.doc_id "
                "WHERE c.collection_id = ? AND c.id BETWEEN ? AND ? ORDER BY c.id",
                (cid, low, high),
            )
            tags: dict[str, list[str]] = {}
            for chunk_id, doc_id, text, headings, title in rows:
                if doc_id not in tags:
                    tags[doc_id] = [
                        t
                        for (t,) in conn.execute(
                            "SELECT tag FROM doc_tags WHERE collection_id = ? AND doc_id = ?", (cid, doc_id)
                        )
                    ]
                body = "\n".join([*([title] if title else []), *json.loads(headings), text])
                yield KeywordDoc(chunk_id, cid, body, tags[doc_id])

    def _apply_dense(self, conn: sqlite3.Connection, graph: CollectionGraph, change: db.Change) -> None:
        if change.op == "add":
            for ids, blobs in db.iter_chunk_vectors(conn, change.collection_id, change.low, change.high):
                graph.add(np.asarray(ids, dtype=np.int64), _vectors(blobs, self.dimension))
        elif change.op == "del":
            graph.delete_range(change.low, change.high)

    def _catch_up_dense(self, conn: sqlite3.Connection, upto: int) -> None:
        if self._dense_seq == upto:
            return
        with self._graph_lock.write():
            if self._dense_seq > upto:
                raise _Stale
            for change in db.changes_between(conn, self._dense_seq, upto):
                if change.op == "drop":
                    self._graphs.pop(change.collection_id, None)
                    continue
                graph = self._graphs.get(change.collection_id)
                if graph is None:
                    graph = self._graphs[change.collection_id] = CollectionGraph(self.dimension, self._hnsw)
                self._apply_dense(conn, graph, change)
            self._dense_seq = upto

    def _ensure_keyword(self, conn: sqlite3.Connection, seq: int) -> None:
        if self._keyword.seq < seq and self._keyword.refresh() < seq:
            # A writer died between its SQLite commit and its Tantivy commit: finish its work.
            with self._write_lock.hold():
                # A live writer may have carried Tantivy past this snapshot while we waited for
                # the lock; catching up would then see it "ahead" and rebuild it. Retry instead.
                if self._keyword.refresh() < seq:
                    self._catch_up_keyword(conn, seq)
        if self._keyword.seq != seq:
            raise _Stale

    def snapshot(self) -> None:
        """Write every HNSW graph to disk so the next start replays less of the log."""
        with self._graph_lock.read():
            for cid, graph in self._graphs.items():
                graph.save(self._ann_dir / f"c{cid}.hnsw", self._dense_seq)
            self._saved_seq = self._dense_seq

    # ------------------------------------------------------------------ reads

    def _read(self, fn: Callable[[sqlite3.Connection, int], T], *, dense: bool, keyword: bool) -> T:
        conn = self._conns.get()
        for attempt in range(_READ_ATTEMPTS):
            conn.execute("BEGIN")
            try:
                seq = db.max_seq(conn)
                try:
                    if dense:
                        self._catch_up_dense(conn, seq)
                    if keyword:
                        self._ensure_keyword(conn, seq)
                    if dense and self._dense_seq != seq:
                        raise _Stale
                except _Stale:
                    if attempt < _READ_ATTEMPTS - 1:
                        continue
                    log.warning("store is changing faster than reads settle; answering from the newest state")
                result = fn(conn, seq)
                # Another thread may have moved an index past `seq` while fn searched it.
                moved = (dense and self._dense_seq != seq) or (keyword and self._keyword.seq != seq)
                if moved and attempt < _READ_ATTEMPTS - 1:
                    continue
                return result
            finally:
                conn.execute("COMMIT")
        raise AssertionError("unreachable")

    def search_sync(self, query: StoreQuery) -> list[ScoredChunk]:
        dense = query.mode in ("dense", "hybrid") and query.vector is not None
        keyword = query.mode in ("keyword", "hybrid") and bool(query.text and query.text.strip())
        if query.mode == "dense" and query.vector is None:
            raise InvalidInputError("dense search needs a query vector")
        return self._read(lambda conn, _: self._search(conn, query, dense, keyword), dense=dense, keyword=keyword)

    def _search(self, conn: sqlite3.Connection, q: StoreQuery, dense: bool, keyword: bool) -> list[ScoredChunk]:
        cid = db.collection_id(conn, q.scope.tenant, q.scope.collection)
        if cid is None:
            return []
        groups = db.filter_groups(q.filters)
        n = max(q.fusion.candidates, q.k)
        dense_hits: list[tuple[int, float]] = []
        keyword_hits: list[tuple[int, float]] = []
        if dense:
            with stage_span("dense"):
                dense_hits = self._dense_hits(conn, cid, q.vector, groups, n)
        if keyword:
            with stage_span("keyword"):
                keyword_hits = self._keyword.search(q.text or "", cid, groups, n)
        with stage_span("fuse"):
            fused = reciprocal_rank_fusion(
                [
                    ([i for i, _ in dense_hits], q.fusion.dense_weight if keyword else 1.0),
                    ([i for i, _ in keyword_hits], q.fusion.keyword_weight if dense else 1.0),
                ],
                k=q.fusion.k,
            )
            if q.mmr_lambda is not None and dense and len(fused) > q.k:
                pool = [i for i, _ in fused[: max(q.k * 4, 20)]]
                with self._graph_lock.read():
                    vectors = self._graphs[cid].vectors(pool)
                # Fusion chooses the pool; MMR re-ranks it on the cosine scale its redundancy term uses.
                picks = maximal_marginal_relevance(np.asarray(q.vector, np.float32), vectors, q.k, q.mmr_lambda)
                fused = [fused[p] for p in picks]
        top_k = fused[: q.k]
        return self._hydrate(conn, top_k, dense_hits, keyword_hits)

    def _dense_hits(
        self, conn: sqlite3.Connection, cid: int, vector: object, groups: list[list[str]], n: int
    ) -> list[tuple[int, float]]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimension:
            raise InvalidInputError(f"query vector has {query.shape[0]} dimensions, the store {self.dimension}")
        allowed = self._allowed_chunks(conn, cid, groups) if groups else None
        with self._graph_lock.read():
            graph = self._graphs.get(cid)
            if graph is None or (allowed is not None and not allowed):
                return []
            if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
                ids = sorted(allowed)
                scores = graph.vectors(ids) @ query
                order = np.argsort(-scores)[:n]
                return [(ids[i], float(scores[i])) for i in order]
            try:
                return graph.search(query, n, allowed.__contains__ if allowed is not None else None)
            except RuntimeError:
                # hnswlib refuses when the filter leaves fewer than k reachable points.
                return graph.search(query, min(n, 10), allowed.__contains__ if allowed is not None else None)

    @staticmethod
    def _allowed_chunks(conn: sqlite3.Connection, cid: int, groups: list[list[str]]) -> set[int]:
        docs: set[str] | None = None
        for group in groups:
            marks = ",".join("?" * len(group))
            found = {
                d
                for (d,) in conn.execute(
                    f"SELECT doc_id FROM doc_tags WHERE collection_id = ? AND tag IN ({marks})", (cid, *group)
                )
            }
            docs = found if docs is None else docs & found
            if not docs:
                return set()
        allowed: set[int] = set()
        doc_list = sorted(docs or ())
        for start in range(0, len(doc_list), 500):
            part = doc_list[start : start + 500]
            allowed.update(
                i
                for (i,) in conn.execute(
                    f"SELECT id FROM chunks WHERE collection_id = ? AND doc_id IN ({','.join('?' * len(part))})",
                    (cid, *part),
                )
            )
        return allowed

    @staticmethod
    def _hydrate(
        conn: sqlite3.Connection,
        ranked: list[tuple[int, float]],
        dense_hits: list[tuple[int, float]],
        keyword_hits: list[tuple[int, float]],
    ) -> list[ScoredChunk]:
        if not ranked:
            return []
        ids = [i for i, _ in ranked]
        rows = conn.execute(
            "SELECT c.id, c.doc_id, c.text, c.headings, c.page, d.title, d.source, d.metadata FROM chunks c "
            "JOIN documents d ON d.collection_id = c.collection_id AND d.doc_id = c.doc_id "
            f"WHERE c.id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
        by_id = {row[0]: row for row in rows}
        dense_scores, keyword_scores = dict(dense_hits), dict(keyword_hits)
        dense_rank = {cid: r for r, (cid, _) in enumerate(dense_hits, start=1)}
        keyword_rank = {cid: r for r, (cid, _) in enumerate(keyword_hits, start=1)}
        out = []
        for chunk_id, score in ranked:
            row = by_id.get(chunk_id)
            if row is None:
                continue
            _, doc_id, text, headings, page, title, source, metadata = row
            out.append(
                ScoredChunk(
                    chunk_id=chunk_id,
                    document_id=doc_id,
                    text=text,
                    score=score,
                    title=title,
                    source=source,
                    headings=tuple(json.loads(headings)),
                    page=page,
                    metadata=json.loads(metadata),
                    dense_rank=dense_rank.get(chunk_id),
                    keyword_rank=keyword_rank.get(chunk_id),
                    dense_score=dense_scores.get(chunk_id),
                    keyword_score=keyword_scores.get(chunk_id),
                )
            )
        return out

    # ----------------------------------------------------------------- writes

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._write_lock.hold():
            conn = self._conns.get()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Still under the lock: Tantivy follows before the next writer starts.
            self._catch_up_keyword(conn, db.max_seq(conn))
        return result

    def upsert_sync(self, scope: Scope, documents: Sequence[DocumentWrite]) -> list[WriteResult]:
        def run(conn: sqlite3.Connection) -> list[WriteResult]:
            cid = writer.ensure_collection(conn, scope.tenant, scope.collection)
            return writer.write_documents(conn, cid, documents, self.dimension)

        return self._write(run)

    def delete_sync(self, scope: Scope, document_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cid = db.collection_id(conn, scope.tenant, scope.collection)
            return cid is not None and writer.delete_document(conn, cid, document_id)

        return self._write(run)

    def drop_collection_sync(self, scope: Scope) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cid = db.collection_id(conn, scope.tenant, scope.collection)
            if cid is None:
                return False
            writer.drop_collection(conn, cid)
            (self._ann_dir / f"c{cid}.hnsw").unlink(missing_ok=True)
            (self._ann_dir / f"c{cid}.json").unlink(missing_ok=True)
            return True

        return self._write(run)

    # ------------------------------------------------------- plain lookups

    def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._read(lambda conn, _: fn(conn), dense=False, keyword=False)

    def document_states_sync(self, scope: Scope, ids: Sequence[str]) -> dict[str, DocumentState]:
        def run(conn: sqlite3.Connection) -> dict[str, DocumentState]:
            cid = db.collection_id(conn, scope.tenant, scope.collection)
            found: dict[str, DocumentState] = {}
            if cid is None:
                return found
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), 500):
                part = unique[start : start + 500]
                rows = conn.execute(
                    "SELECT doc_id, content_hash, version, chunk_count FROM documents WHERE collection_id = ? "
                    f"AND doc_id IN ({','.join('?' * len(part))})",
                    (cid, *part),
                )
                found.update((row[0], DocumentState(*row[1:])) for row in rows)
            return found

        return self._query(run)

    def get_document_sync(self, scope: Scope, document_id: str) -> DocumentInfo | None:
        def run(conn: sqlite3.Connection) -> DocumentInfo | None:
            row = conn.execute(
                f"SELECT {db.DOCUMENT_COLUMNS} FROM documents WHERE collection_id = "
                "(SELECT id FROM collections WHERE tenant = ? AND name = ?) AND doc_id = ?",
                (scope.tenant, scope.collection, document_id),
            ).fetchone()
            return None if row is None else db.document_info(row)

        return self._query(run)

    def list_documents_sync(self, scope: Scope, limit: int, offset: int) -> tuple[list[DocumentInfo], int]:
        def run(conn: sqlite3.Connection) -> tuple[list[DocumentInfo], int]:
            cid = db.collection_id(conn, scope.tenant, scope.collection)
            if cid is None:
                return [], 0
            rows = conn.execute(
                f"SELECT {db.DOCUMENT_COLUMNS} FROM documents WHERE collection_id = ? ORDER BY doc_id LIMIT ? OFFSET ?",
                (cid, limit, offset),
            ).fetchall()
            total = conn.execute("SELECT count(*) FROM documents WHERE collection_id = ?", (cid,)).fetchone()[0]
            return [db.document_info(r) for r in rows], int(total)

        return self._query(run)

    def stats_sync(self, scope: Scope) -> CollectionStats:
        def run(conn: sqlite3.Connection) -> CollectionStats:
            cid = db.collection_id(conn, scope.tenant, scope.collection)
            if cid is None:
                return CollectionStats(0, 0)
            docs, chunks = conn.execute(
                "SELECT count(*), coalesce(sum(chunk_count), 0) FROM documents WHERE collection_id = ?",
                (cid,),
            ).fetchone()
            return CollectionStats(int(docs), int(chunks))

        return self._query(run)

    def live_chunks_sync(self, scope: Scope, chunk_ids: Sequence[int]) -> set[int]:
        return set(self._live_at(scope, tuple(int(i) for i in chunk_ids))[0])

    def _live_at(self, scope: Scope, ids: tuple[int, ...]) -> tuple[frozenset[int], int]:
        """The live ones among `ids`, and the change-log position they were read at."""
        if not ids:
            return frozenset(), db.max_seq(self._conns.get())

        def run(conn: sqlite3.Connection, seq: int) -> tuple[frozenset[int], int]:
            cid = db.collection_id(conn, scope.tenant, scope.collection)
            if cid is None:
                return frozenset(), seq
            rows = conn.execute(
                f"SELECT id FROM chunks WHERE collection_id = ? AND id IN ({','.join('?' * len(ids))})", (cid, *ids)
            )
            return frozenset(row[0] for row in rows), seq

        return self._read(run, dense=False, keyword=False)

    def totals_sync(self) -> CollectionStats:
        docs, chunks = self._query(
            lambda conn: conn.execute("SELECT count(*), coalesce(sum(chunk_count), 0) FROM documents").fetchone()
        )
        return CollectionStats(int(docs), int(chunks))

    def list_collections_sync(self, tenant: str) -> list[str]:
        return self._query(
            lambda conn: [
                n for (n,) in conn.execute("SELECT name FROM collections WHERE tenant = ? ORDER BY name", (tenant,))
            ]
        )

    # ------------------------------------------------------------ protocol

    async def document_states(self, scope: Scope, ids: Sequence[str]) -> dict[str, DocumentState]:
        return await asyncio.to_thread(self.document_states_sync, scope, ids)

    async def upsert(self, scope: Scope, documents: Sequence[DocumentWrite]) -> list[WriteResult]:
        return await asyncio.to_thread(self.upsert_sync, scope, documents)

    async def delete(self, scope: Scope, document_id: str) -> bool:
        return await asyncio.to_thread(self.delete_sync, scope, document_id)

    async def get_document(self, scope: Scope, document_id: str) -> DocumentInfo | None:
        return await asyncio.to_thread(self.get_document_sync, scope, document_id)

    async def list_documents(self, scope: Scope, *, limit: int = 50, offset: int = 0) -> tuple[list[DocumentInfo], int]:
        return await asyncio.to_thread(self.list_documents_sync, scope, limit, offset)

    async def search(self, query: StoreQuery) -> list[ScoredChunk]:
        return await asyncio.to_thread(self.search_sync, query)

    async def stats(self, scope: Scope) -> CollectionStats:
        return await asyncio.to_thread(self.stats_sync, scope)

    async def totals(self) -> CollectionStats:
        return await asyncio.to_thread(self.totals_sync)

    async def live_chunks(self, scope: Scope, chunk_ids: Sequence[int]) -> set[int]:
        # Every cache hit asks this. While nothing was written since the same question was
        # answered, one indexed read of the change log's head (WAL: never waits on a writer)
        # answers it on the loop, without a thread hop or a transaction.
        ids = tuple(sorted({int(i) for i in chunk_ids}))
        key = (scope, ids)
        known = self._live.get(db.max_seq(self._conns.get()), key)
        if known is not None:
            return set(known)
        live, seq = await asyncio.to_thread(self._live_at, scope, ids)
        self._live.put(seq, key, live)
        return set(live)

    async def list_collections(self, tenant: str) -> list[str]:
        return await asyncio.to_thread(self.list_collections_sync, tenant)

    async def drop_collection(self, scope: Scope) -> bool:
        return await asyncio.to_thread(self.drop_collection_sync, scope)

    async def ping(self) -> None:
        try:
            row = await asyncio.to_thread(
                self._query, lambda conn: conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store unavailable: {exc}") from exc
        # Another process on a newer release may have migrated the shared file past us.
        if row is None or row[0] != db.SCHEMA_VERSION:
            raise StoreError(
                f"store schema is {row[0] if row else 'missing'}, this process expects {db.SCHEMA_VERSION}"
            )

    def close(self) -> None:
        if self._dense_seq != self._saved_seq:
            self.snapshot()
        self._conns.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def _vectors(blobs: list[bytes], dimension: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dimension)
