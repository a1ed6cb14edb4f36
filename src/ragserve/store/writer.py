"""Write transactions of the embedded store, run inside BEGIN IMMEDIATE under the writer lock."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

import numpy as np

from ragserve.errors import InvalidInputError
from ragserve.store import sqlite_state as db
from ragserve.types import DocumentWrite, WriteResult


def ensure_collection(conn: sqlite3.Connection, tenant: str, name: str) -> int:
    found = db.collection_id(conn, tenant, name)
    if found is not None:
        return found
    cur = conn.execute(
        "INSERT INTO collections (tenant, name, created_at) VALUES (?, ?, ?)", (tenant, name, time.time())
    )
    return int(cur.lastrowid or 0)


def _remove_chunks(conn: sqlite3.Connection, cid: int, doc_id: str) -> tuple[int, int] | None:
    low, high = conn.execute(
        "SELECT min(id), max(id) FROM chunks WHERE collection_id = ? AND doc_id = ?", (cid, doc_id)
    ).fetchone()
    conn.execute("DELETE FROM chunks WHERE collection_id = ? AND doc_id = ?", (cid, doc_id))
    conn.execute("DELETE FROM doc_tags WHERE collection_id = ? AND doc_id = ?", (cid, doc_id))
    return None if low is None else (int(low), int(high))


def write_documents(
    conn: sqlite3.Connection, cid: int, documents: Sequence[DocumentWrite], dimension: int
) -> list[WriteResult]:
    now = time.time()
    results: list[WriteResult] = []
    first: int | None = None
    last: int | None = None
    deleted: list[tuple[int, int]] = []
    for doc in documents:
        row = conn.execute(
            "SELECT version, content_hash, chunk_count, created_at FROM documents "
            "WHERE collection_id = ? AND doc_id = ?",
            (cid, doc.id),
        ).fetchone()
        if row is not None and row[1] == doc.content_hash:
            results.append(WriteResult(doc.id, "unchanged", row[0], row[2]))
            continue
        if row is not None and (span := _remove_chunks(conn, cid, doc.id)) is not None:
            deleted.append(span)
        version = 1 if row is None else row[0] + 1
        for chunk in doc.chunks:
            vector = np.asarray(chunk.vector, dtype=np.float32).reshape(-1)
            if vector.shape[0] != dimension:
                raise InvalidInputError(
                    f"document {doc.id!r}: vector of {vector.shape[0]} dimensions, expected {dimension}"
                )
            cur = conn.execute(
                "INSERT INTO chunks (collection_id, doc_id, ordinal, text, headings, page, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    doc.id,
                    chunk.ordinal,
                    chunk.text,
                    json.dumps(list(chunk.headings)),
                    chunk.page,
                    vector.tobytes(),
                ),
            )
            chunk_id = int(cur.lastrowid or 0)
            first = chunk_id if first is None else first
            last = chunk_id
        conn.executemany(
            "INSERT OR IGNORE INTO doc_tags (collection_id, tag, doc_id) VALUES (?, ?, ?)",
            [(cid, t, doc.id) for t in db.document_tags(doc.id, doc.source, doc.metadata)],
        )
        conn.execute(
            "INSERT OR REPLACE INTO documents (collection_id, doc_id, version, content_hash, title, source, "
            "metadata, chunk_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                doc.id,
                version,
                doc.content_hash,
                doc.title,
                doc.source,
                json.dumps(doc.metadata, ensure_ascii=False),
                len(doc.chunks),
                now if row is None else row[3],
                now,
            ),
        )
        results.append(WriteResult(doc.id, "created" if row is None else "updated", version, len(doc.chunks)))
    changes = [(cid, "del", low, high) for low, high in deleted]
    if first is not None and last is not None:
        changes.append((cid, "add", first, last))
    conn.executemany("INSERT INTO changes (collection_id, op, low, high) VALUES (?, ?, ?, ?)", changes)
    return results


def delete_document(conn: sqlite3.Connection, cid: int, doc_id: str) -> bool:
    if (
        conn.execute(
            "DELETE FROM documents WHERE collection_id = ? AND doc_id = ? RETURNING doc_id", (cid, doc_id)
        ).fetchone()
        is None
    ):
        return False
    span = _remove_chunks(conn, cid, doc_id)
    if span is not None:
        conn.execute("INSERT INTO changes (collection_id, op, low, high) VALUES (?, 'del', ?, ?)", (cid, *span))
    return True


def drop_collection(conn: sqlite3.Connection, cid: int) -> None:
    for table in ("chunks", "doc_tags", "documents"):
        conn.execute(f"DELETE FROM {table} WHERE collection_id = ?", (cid,))
    conn.execute("DELETE FROM collections WHERE id = ?", (cid,))
    conn.execute("INSERT INTO changes (collection_id, op, low, high) VALUES (?, 'drop', 0, 0)", (cid,))
