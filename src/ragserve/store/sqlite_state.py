"""SQLite, the durable truth of the embedded store: documents, chunks, vectors, a change log.

Every write appends to `changes`; the derived indexes (Tantivy, HNSW) replay it. Chunk ids
come from AUTOINCREMENT, so they are never reused, and the chunks of one document version
are inserted together under the writer lock, so a version is one contiguous id range.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragserve.types import DocumentInfo, Filters, Metadata

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE IF NOT EXISTS documents (
    collection_id INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    title TEXT,
    source TEXT,
    metadata TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection_id, doc_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    headings TEXT NOT NULL,
    page INTEGER,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (collection_id, doc_id);
CREATE TABLE IF NOT EXISTS doc_tags (
    collection_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    PRIMARY KEY (collection_id, tag, doc_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS doc_tags_by_document ON doc_tags (collection_id, doc_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'del', 'drop')),
    low INTEGER NOT NULL,
    high INTEGER NOT NULL
);
"""

# Filter keys answered from document columns rather than user metadata.
RESERVED_FILTER_KEYS = ("document_id", "source")


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    collection_id: int
    op: str
    low: int
    high: int


def tag(key: str, value: Any) -> str:
    # JSON keeps "5" and 5 apart, as a filter on one must not match the other.
    return f"{key}\x1f{json.dumps(value, ensure_ascii=False, sort_keys=True)}"


def document_tags(doc_id: str, source: str | None, metadata: Mapping[str, Any]) -> list[str]:
    tags: set[str] = set()
    for key, value in metadata.items():
        if key in RESERVED_FILTER_KEYS:
            continue
        values = value if isinstance(value, list) else [value]
        tags.update(tag(key, v) for v in values if isinstance(v, str | int | float | bool))
    tags.add(tag("document_id", doc_id))
    if source is not None:
        tags.add(tag("source", source))
    return sorted(tags)


def filter_groups(filters: Filters | None) -> list[list[str]]:
    """Each key becomes an OR group of tags; the groups are ANDed."""
    if not filters:
        return []
    groups = []
    for key, value in sorted(filters.items()):
        values = value if isinstance(value, list) else [value]
        groups.append([tag(key, v) for v in values])
    return groups


class Connections:
    """One SQLite connection per thread (sqlite3 objects must stay on their thread)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def max_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])


def changes_between(conn: sqlite3.Connection, after: int, upto: int) -> list[Change]:
    rows = conn.execute(
        "SELECT seq, collection_id, op, low, high FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq",
        (after, upto),
    ).fetchall()
    return [Change(*row) for row in rows]


def collection_id(conn: sqlite3.Connection, tenant: str, name: str) -> int | None:
    row = conn.execute("SELECT id FROM collections WHERE tenant = ? AND name = ?", (tenant, name)).fetchone()
    return None if row is None else int(row[0])


def iter_chunk_vectors(
    conn: sqlite3.Connection, collection: int, low: int, high: int, batch: int = 20_000
) -> Iterator[tuple[list[int], list[bytes]]]:
    start = low
    while start <= high:
        rows = conn.execute(
            "SELECT id, vector FROM chunks WHERE collection_id = ? AND id >= ? AND id <= ? ORDER BY id LIMIT ?",
            (collection, start, high, batch),
        ).fetchall()
        if not rows:
            return
        yield [r[0] for r in rows], [r[1] for r in rows]
        start = rows[-1][0] + 1


def document_info(row: tuple[Any, ...]) -> DocumentInfo:
    doc_id, version, content_hash, chunk_count, title, source, metadata, created, updated = row
    meta: Metadata = json.loads(metadata)
    return DocumentInfo(
        id=doc_id,
        version=version,
        content_hash=content_hash,
        chunk_count=chunk_count,
        title=title,
        source=source,
        metadata=meta,
        created_at=created,
        updated_at=updated,
    )


DOCUMENT_COLUMNS = "doc_id, version, content_hash, chunk_count, title, source, metadata, created_at, updated_at"
