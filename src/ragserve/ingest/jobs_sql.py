"""`SQLJobStore`: the `JobStore` on the service's relational database (SQLite or PostgreSQL).

Jobs live in the `jobs` table of the same database as the API keys: `state.sqlite3` in the
data directory, shared by the processes on one machine, or the PostgreSQL every replica
shares. A claim is one `UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING` statement:

- on SQLite the statement holds the write lock from the subquery to the update, so two
  processes can never pick the same row;
- on PostgreSQL the subquery adds `FOR UPDATE SKIP LOCKED`: a claimer locks the row it
  picks, and a concurrent claimer skips it for the next queued one instead of waiting for
  it (or, under READ COMMITTED, picking the same row and then finding it taken).

Stale jobs are re-queued the same way, rows locked with SKIP LOCKED, so two sweepers never
fight (or deadlock) over the same rows and each stale job is re-queued once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, String, case, cast, func, literal, select, update

from ragserve.ingest.jobs import Job, JobCounts, JobOutcome, Progress
from ragserve.relational.database import Database, jobs
from ragserve.types import Scope

RUNNING = jobs.c.state == "running"


class SQLJobStore:
    """Jobs in the `jobs` table of `db`; closes `db` on `aclose` only when it opened it."""

    def __init__(self, db: Database, *, owns_db: bool = False) -> None:
        self.db = db
        self._owns_db = owns_db

    @classmethod
    async def open(cls, url: str | None, data_dir: Path) -> SQLJobStore:
        """A store on its own connection pool to the service's database (as `Database.open` finds it)."""
        db = await asyncio.to_thread(Database.open, url, data_dir)
        return cls(db, owns_db=True)

    async def aclose(self) -> None:
        if self._owns_db:
            self.db.close()

    async def create(self, job: Job) -> None:
        values = _row(job)
        await self.db.run(lambda conn: conn.execute(jobs.insert().values(**values)))

    async def get(self, job_id: str, tenant: str) -> Job | None:
        query = select(jobs).where(jobs.c.id == job_id, jobs.c.tenant == tenant)
        row = await self.db.run(lambda conn: conn.execute(query).first())
        return None if row is None else _job(row)

    async def claim(self, owner: str) -> Job | None:
        return await self.db.run(lambda conn: _claim(conn, owner, time.time()))

    async def heartbeat(self, job_id: str, owner: str, progress: Progress) -> bool:
        return await self._change(job_id, owner, {"heartbeat_at": time.time(), "progress": _dump(progress)})

    async def finish(self, job_id: str, owner: str, outcome: JobOutcome, progress: Progress) -> bool:
        now = time.time()
        values = {
            "state": outcome.state,
            "progress": _dump(progress),
            "errors": _dump(outcome.errors),
            "result": None if outcome.result is None else _dump(outcome.result),
            "error": outcome.error,
            "finished_at": now,
            "heartbeat_at": now,
        }
        return await self._change(job_id, owner, values)

    async def release(self, job_id: str, owner: str) -> bool:
        values = {
            "state": "queued",
            "owner": None,
            "attempts": case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0),
            "heartbeat_at": None,
        }
        return await self._change(job_id, owner, values)

    async def requeue_stale(self, heartbeat_before: float, max_attempts: int) -> list[Job]:
        return await self.db.run(lambda conn: _requeue_stale(conn, heartbeat_before, max_attempts, time.time()))

    async def depth(self) -> JobCounts:
        counted = (
            select(jobs.c.state, func.count()).where(jobs.c.state.in_(("queued", "running"))).group_by(jobs.c.state)
        )
        found = dict(await self.db.run(lambda conn: [tuple(row) for row in conn.execute(counted)]))
        return JobCounts(queued=int(found.get("queued", 0)), running=int(found.get("running", 0)))

    async def _change(self, job_id: str, claim: str, values: dict[str, Any]) -> bool:
        """Apply `values` to the job if `claim` still holds it (running, same owner); False when it does not."""
        statement = update(jobs).where(jobs.c.id == job_id, jobs.c.owner == claim, RUNNING).values(values)
        return await self.db.run(lambda conn: conn.execute(statement).rowcount == 1)


def _claim(conn: Connection, owner: str, now: float) -> Job | None:
    # A read first, so idle workers polling take no write lock (SQLite) and lock no row.
    if conn.execute(select(jobs.c.id).where(jobs.c.state == "queued").limit(1)).first() is None:
        return None
    oldest = (
        select(jobs.c.id)
        .where(jobs.c.state == "queued")
        .order_by(jobs.c.created_at, jobs.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL; SQLite has no row locks to skip
        .scalar_subquery()
    )
    statement = (
        update(jobs)
        .where(jobs.c.id == oldest, jobs.c.state == "queued")
        .values(state="running", owner=owner, attempts=jobs.c.attempts + 1, started_at=now, heartbeat_at=now)
        .returning(*jobs.c)
    )
    row = conn.execute(statement).first()
    return None if row is None else _job(row)


def _requeue_stale(conn: Connection, before: float, max_attempts: int, now: float) -> list[Job]:
    stale = (RUNNING, jobs.c.heartbeat_at.is_(None) | (jobs.c.heartbeat_at < before))
    # A read first: the common case (nothing stale) then takes no write lock at all.
    if conn.execute(select(jobs.c.id).where(*stale).limit(1)).first() is None:
        return []
    locked = select(jobs.c.id).where(*stale).order_by(jobs.c.id).with_for_update(skip_locked=True)
    exhausted = jobs.c.attempts >= max_attempts
    gave_up = (
        literal("the process running it stopped ", String)
        + cast(jobs.c.attempts, String)
        + literal(" times; giving up", String)
    )
    statement = (
        update(jobs)
        .where(jobs.c.id.in_(locked), *stale)
        .values(
            owner=None,
            heartbeat_at=None,
            state=case((exhausted, "failed"), else_="queued"),
            finished_at=case((exhausted, now), else_=None),
            error=case((exhausted, gave_up), else_=None),
        )
        .returning(*jobs.c)
    )
    return sorted((_job(row) for row in conn.execute(statement)), key=lambda job: (job.created_at, job.id))


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "tenant": job.scope.tenant,
        "collection": job.scope.collection,
        "state": job.state,
        "owner": job.owner,
        "attempts": job.attempts,
        "payload": _dump(job.payload),
        "progress": _dump(job.progress),
        "errors": _dump(job.errors),
        "result": None if job.result is None else _dump(job.result),
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "heartbeat_at": job.heartbeat_at,
        "finished_at": job.finished_at,
    }


def _job(row: Row[Any]) -> Job:
    r = row._mapping
    return Job(
        id=r["id"],
        scope=Scope(tenant=r["tenant"], collection=r["collection"]),
        state=r["state"],
        payload=json.loads(r["payload"]),
        progress=json.loads(r["progress"]),
        errors=json.loads(r["errors"]),
        result=None if r["result"] is None else json.loads(r["result"]),
        error=r["error"],
        attempts=r["attempts"],
        owner=r["owner"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        heartbeat_at=r["heartbeat_at"],
        finished_at=r["finished_at"],
    )
