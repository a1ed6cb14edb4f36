"""`SQLiteJobStore`: the embedded `JobStore`, one SQLite file (WAL) in the data directory.

Several API processes sharing the data directory share this file; SQLite serialises the
writers, and each claim is one `UPDATE ... RETURNING` statement, so two processes can never
claim the same job.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ragserve.errors import StoreError
from ragserve.ingest.jobs import Job, JobOutcome, Progress
from ragserve.store.sqlite_state import Connections
from ragserve.types import Scope

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    collection TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    owner TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    progress TEXT NOT NULL,
    errors TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    heartbeat_at REAL,
    finished_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
"""

P = ParamSpec("P")
T = TypeVar("T")

COLUMNS = (
    "id, tenant, collection, state, owner, attempts, payload, progress, errors, result, error,"
    " created_at, started_at, heartbeat_at, finished_at"
)


class SQLiteJobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connections = Connections(path)

    @classmethod
    async def open(cls, path: Path) -> SQLiteJobStore:
        store = cls(path)
        await asyncio.to_thread(store._create_schema)
        return store

    async def aclose(self) -> None:
        self._connections.close()

    async def create(self, job: Job) -> None:
        await self._call(self._create, job)

    async def get(self, job_id: str, tenant: str) -> Job | None:
        return await self._call(self._get, job_id, tenant)

    async def claim(self, owner: str) -> Job | None:
        return await self._call(self._claim, owner, time.time())

    async def heartbeat(self, job_id: str, owner: str, progress: Progress) -> bool:
        sql = "UPDATE jobs SET heartbeat_at = ?, progress = ? WHERE id = ? AND owner = ? AND state = 'running'"
        return await self._call(self._changed, sql, (time.time(), _dump(progress), job_id, owner))

    async def finish(self, job_id: str, owner: str, outcome: JobOutcome, progress: Progress) -> bool:
        now = time.time()
        sql = (
            "UPDATE jobs SET state = ?, progress = ?, errors = ?, result = ?, error = ?, finished_at = ?,"
            " heartbeat_at = ? WHERE id = ? AND owner = ? AND state = 'running'"
        )
        result = None if outcome.result is None else _dump(outcome.result)
        values = (outcome.state, _dump(progress), _dump(outcome.errors), result, outcome.error, now, now, job_id, owner)
        return await self._call(self._changed, sql, values)

    async def release(self, job_id: str, owner: str) -> bool:
        sql = (
            "UPDATE jobs SET state = 'queued', owner = NULL, attempts = max(attempts - 1, 0), heartbeat_at = NULL"
            " WHERE id = ? AND owner = ? AND state = 'running'"
        )
        return await self._call(self._changed, sql, (job_id, owner))

    async def requeue_stale(self, heartbeat_before: float, max_attempts: int) -> list[Job]:
        return await self._call(self._requeue_stale, heartbeat_before, max_attempts, time.time())

    # ------------------------------------------------------------ in a thread

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"job store failed: {exc}") from exc

    def _create_schema(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connections.get().executescript(SCHEMA)

    def _create(self, job: Job) -> None:
        self._connections.get().execute(
            f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * 15)})",
            (
                job.id,
                job.scope.tenant,
                job.scope.collection,
                job.state,
                job.owner,
                job.attempts,
                _dump(job.payload),
                _dump(job.progress),
                _dump(job.errors),
                None if job.result is None else _dump(job.result),
                job.error,
                job.created_at,
                job.started_at,
                job.heartbeat_at,
                job.finished_at,
            ),
        )

    def _get(self, job_id: str, tenant: str) -> Job | None:
        sql = f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND tenant = ?"
        row = self._connections.get().execute(sql, (job_id, tenant)).fetchone()
        return None if row is None else _job(row)

    def _claim(self, owner: str, now: float) -> Job | None:
        conn = self._connections.get()
        # A read first, so idle workers polling take no write lock.
        if conn.execute("SELECT 1 FROM jobs WHERE state = 'queued' LIMIT 1").fetchone() is None:
            return None
        # One statement: SQLite holds the write lock across the subquery and the update.
        row = conn.execute(
            "UPDATE jobs SET state = 'running', owner = ?, attempts = attempts + 1, started_at = ?,"
            " heartbeat_at = ? WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY created_at, id"
            f" LIMIT 1) AND state = 'queued' RETURNING {COLUMNS}",
            (owner, now, now),
        ).fetchone()
        return None if row is None else _job(row)

    def _changed(self, sql: str, values: tuple[Any, ...]) -> bool:
        return self._connections.get().execute(sql, values).rowcount == 1

    def _requeue_stale(self, before: float, max_attempts: int, now: float) -> list[Job]:
        conn = self._connections.get()
        # A read first: the common case (nothing stale) then takes no write lock at all.
        stale = "state = 'running' AND coalesce(heartbeat_at, 0) < ?"
        if conn.execute(f"SELECT 1 FROM jobs WHERE {stale} LIMIT 1", (before,)).fetchone() is None:
            return []
        rows = conn.execute(
            "UPDATE jobs SET owner = NULL, heartbeat_at = NULL,"
            " state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END,"
            " finished_at = CASE WHEN attempts >= ? THEN ? END,"
            " error = CASE WHEN attempts >= ?"
            " THEN 'the process running it stopped ' || attempts || ' times; giving up' END"
            f" WHERE {stale} RETURNING {COLUMNS}",
            (max_attempts, max_attempts, now, max_attempts, before),
        ).fetchall()
        return [_job(row) for row in rows]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _job(row: tuple[Any, ...]) -> Job:
    (
        job_id,
        tenant,
        collection,
        state,
        owner,
        attempts,
        payload,
        progress,
        errors,
        result,
        error,
        created_at,
        started_at,
        heartbeat_at,
        finished_at,
    ) = row
    return Job(
        id=job_id,
        scope=Scope(tenant=tenant, collection=collection),
        state=state,
        payload=json.loads(payload),
        progress=json.loads(progress),
        errors=json.loads(errors),
        result=None if result is None else json.loads(result),
        error=error,
        attempts=attempts,
        owner=owner,
        created_at=created_at,
        started_at=started_at,
        heartbeat_at=heartbeat_at,
        finished_at=finished_at,
    )
