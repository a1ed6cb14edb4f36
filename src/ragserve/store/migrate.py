"""`ragserve migrate-store --from embedded --to qdrant`: copy a deployment's store without re-embedding.

Embedding is the expensive part of ingestion, and the embedded store keeps every chunk's
vector in its SQLite file, so the copy reads documents, chunks and vectors straight from
SQLite (no HNSW graph or Tantivy index is loaded, no model either: the file records the model
and dimension it was built with) and writes them with `QdrantVectorStore.restore`, which keeps
each document's version, content hash and timestamps. Ingestion after the switch then skips
unchanged documents exactly as before. Chunk ids are new in Qdrant, so answers cached against
the old store stop being live and are recomputed.

Run it while nothing writes to the embedded store (a write during the copy may be missed);
running it again replaces what an earlier run copied, so an interrupted copy can be redone.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragserve.errors import ConfigurationError
from ragserve.settings import Settings
from ragserve.store import sqlite_state as db
from ragserve.types import ChunkRecord, DocumentWrite, Scope

if TYPE_CHECKING:  # qdrant_client is imported only when the command runs, not with every CLI start
    from ragserve.store.qdrant import QdrantVectorStore, RestoredDocument

DOCUMENTS_PER_BATCH = 200


@dataclass(frozen=True, slots=True)
class CopyReport:
    collections: int
    documents: int
    chunks: int


def add_parser(sub: Any) -> None:
    migrate = sub.add_parser("migrate-store", help="copy every tenant's documents and vectors to another store")
    migrate.add_argument("--from", dest="source", choices=["embedded"], required=True)
    migrate.add_argument("--to", dest="target", choices=["qdrant"], required=True)


async def run(settings: Settings, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    if not settings.qdrant_url:
        raise ConfigurationError("migrate-store --to qdrant needs RAGSERVE_QDRANT_URL")
    path = settings.data_dir / "ragserve.sqlite3"
    if not path.exists():
        raise ConfigurationError(f"no embedded store in {settings.data_dir}")
    model, dimension = embedded_identity(path)
    from ragserve.store.qdrant import QdrantVectorStore, open_client

    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    target = QdrantVectorStore(
        open_client(settings.qdrant_url, api_key),
        dimension,
        model,
        prefix=settings.qdrant_collection_prefix,
        shards=settings.qdrant_shards,
        replication=settings.qdrant_replication,
    )
    try:
        report = await copy_embedded(path, target, on_collection=lambda s, n: say(f"{s.tenant}/{s.collection}: {n}"))
    finally:
        await target.aclose()
    say(f"copied {report.collections} collections, {report.documents} documents, {report.chunks} chunks")
    return 0


def embedded_identity(path: Path) -> tuple[str, int]:
    """The model name and dimension an embedded store's SQLite file was built with."""
    with closing(_reader(path)) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "model" not in meta or "dimension" not in meta:
        raise ConfigurationError(f"{path} is not an embedded ragserve store")
    return meta["model"], int(meta["dimension"])


async def copy_embedded(
    path: Path, target: QdrantVectorStore, on_collection: Callable[[Scope, int], None] | None = None
) -> CopyReport:
    """Copy every collection of the embedded store at `path` into `target`."""
    collections = documents = chunks = 0
    with closing(_reader(path)) as conn:
        scopes = conn.execute("SELECT id, tenant, name FROM collections ORDER BY tenant, name").fetchall()
        for cid, tenant, name in scopes:
            scope = Scope(tenant, name)
            copied = 0
            for batch in _documents(conn, cid, target.dimension):
                await target.restore(scope, batch)
                copied += len(batch)
                chunks += sum(len(d.write.chunks) for d in batch)
            if copied == 0:
                await target.restore(scope, [])
            collections += 1
            documents += copied
            if on_collection is not None:
                on_collection(scope, copied)
    return CopyReport(collections, documents, chunks)


def _reader(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _documents(conn: sqlite3.Connection, cid: int, dimension: int) -> Iterator[list[RestoredDocument]]:
    from ragserve.store.qdrant import RestoredDocument

    after = ""
    while True:
        rows = conn.execute(
            f"SELECT {db.DOCUMENT_COLUMNS} FROM documents WHERE collection_id = ? AND doc_id > ? "
            "ORDER BY doc_id LIMIT ?",
            (cid, after, DOCUMENTS_PER_BATCH),
        ).fetchall()
        if not rows:
            return
        infos = [db.document_info(row) for row in rows]
        chunks: dict[str, list[ChunkRecord]] = {i.id: [] for i in infos}
        marks = ",".join("?" * len(infos))
        for doc_id, ordinal, text, headings, page, blob in conn.execute(
            f"SELECT doc_id, ordinal, text, headings, page, vector FROM chunks WHERE collection_id = ? "
            f"AND doc_id IN ({marks}) ORDER BY doc_id, ordinal, id",
            (cid, *chunks),
        ):
            vector = np.frombuffer(blob, dtype=np.float32, count=dimension)
            chunks[doc_id].append(ChunkRecord(text, ordinal, vector, tuple(json.loads(headings)), page))
        yield [
            RestoredDocument(
                DocumentWrite(i.id, i.content_hash, chunks[i.id], i.title, i.source, i.metadata),
                i.version,
                i.created_at,
                i.updated_at,
            )
            for i in infos
        ]
        after = infos[-1].id
