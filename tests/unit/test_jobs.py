"""The SQL job store (on SQLite and on a real PostgreSQL) and the job worker, with a small runner.

PostgreSQL tests get a schema of their own and are skipped, saying why, only when the
server at 127.0.0.1:5432 cannot be reached (`relational_backends`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ragserve.errors import ParseError
from ragserve.ingest.jobs import Job, JobCounts, JobOutcome, JobWorker, ProgressSink
from ragserve.ingest.jobs_sql import SQLJobStore
from ragserve.relational.database import jobs
from ragserve.types import Scope
from relational_backends import BACKENDS, database_url, url_of

SCOPE = Scope("acme", "docs")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLJobStore]:
    with database_url(request.param, tmp_path) as url:
        s = await SQLJobStore.open(url, tmp_path)
        assert s.db.dialect == request.param
        try:
            yield s
        finally:
            await s.aclose()


async def another_process(store: SQLJobStore, tmp_path: Path) -> SQLJobStore:
    """A second store with a connection pool of its own on the same database, as another API process has."""
    return await SQLJobStore.open(url_of(store.db), tmp_path)


def new_job(job_id: str, *, created_at: float | None = None, **payload: object) -> Job:
    return Job(id=job_id, scope=SCOPE, state="queued", payload=dict(payload), created_at=created_at or time.time())


def age_heartbeat(store: SQLJobStore, job_id: str, seconds: float) -> None:
    statement = sa.update(jobs).where(jobs.c.id == job_id).values(heartbeat_at=jobs.c.heartbeat_at - seconds)
    store.db.run_sync(lambda conn: conn.execute(statement))


class Runner:
    """Runs jobs by their payload: sleeps, reports progress, fails or raises on request."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.discarded: list[str] = []
        self.started = asyncio.Event()

    async def run(self, job: Job, report: ProgressSink) -> JobOutcome:
        self.ran.append(job.id)
        self.started.set()
        report({"step": 1})
        await asyncio.sleep(float(job.payload.get("sleep", 0)))
        if job.payload.get("raise") == "ragserve":
            raise ParseError("the input was unreadable")
        if job.payload.get("raise") == "bug":
            raise KeyError("oops")
        report({"step": 2})
        return JobOutcome("succeeded", result={"echo": job.payload.get("echo")})

    async def discard(self, job: Job) -> None:
        self.discarded.append(job.id)


async def wait_for(store: SQLJobStore, job_id: str, *states: str, limit_s: float = 10) -> Job:
    deadline = time.monotonic() + limit_s
    while True:
        job = await store.get(job_id, SCOPE.tenant)
        assert job is not None
        if job.state in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job.state}"
        await asyncio.sleep(0.02)


# --- the store ------------------------------------------------------------------------


async def test_create_get_is_tenant_scoped(store: SQLJobStore) -> None:
    await store.create(new_job("j1", echo="hi"))
    job = await store.get("j1", "acme")
    assert job is not None
    assert (job.id, job.scope, job.state, job.payload, job.attempts) == ("j1", SCOPE, "queued", {"echo": "hi"}, 0)
    assert await store.get("j1", "other-tenant") is None
    assert await store.get("missing", "acme") is None


async def test_claims_take_the_oldest_first_and_never_twice(tmp_path: Path, store: SQLJobStore) -> None:
    now = time.time()
    for i in range(6):
        await store.create(new_job(f"j{i}", created_at=now + i))
    first = await store.claim("w/1")
    assert first is not None and first.id == "j0"
    assert (first.state, first.owner, first.attempts) == ("running", "w/1", 1)
    assert first.started_at is not None and first.heartbeat_at is not None

    # A second store on the same database stands in for another API process.
    other = await another_process(store, tmp_path)
    try:
        claims = await asyncio.gather(*(s.claim(f"w/{i}") for i in range(10) for s in (store, other)))
    finally:
        await other.aclose()
    claimed = [job.id for job in claims if job is not None]
    assert sorted(claimed) == ["j1", "j2", "j3", "j4", "j5"]
    assert await store.claim("w/late") is None


async def test_updates_need_the_claim_token(store: SQLJobStore) -> None:
    await store.create(new_job("j1"))
    job = await store.claim("w/1")
    assert job is not None
    assert not await store.heartbeat("j1", "w/intruder", {"step": 9})
    assert await store.heartbeat("j1", "w/1", {"step": 1})
    assert (await store.get("j1", "acme")).progress == {"step": 1}  # type: ignore[union-attr]

    outcome = JobOutcome("succeeded", errors=[{"filename": "a", "type": "t", "message": "m"}], result={"n": 1})
    assert not await store.finish("j1", "w/intruder", outcome, {"step": 2})
    assert await store.finish("j1", "w/1", outcome, {"step": 2})
    done = await store.get("j1", "acme")
    assert done is not None
    assert (done.state, done.progress, done.result, done.errors) == ("succeeded", {"step": 2}, {"n": 1}, outcome.errors)
    assert done.finished_at is not None and done.finished_at >= (done.started_at or 0)
    assert not await store.finish("j1", "w/1", outcome, {})  # finished once, for good
    assert not await store.heartbeat("j1", "w/1", {})


async def test_release_requeues_without_counting_an_attempt(store: SQLJobStore) -> None:
    await store.create(new_job("j1"))
    await store.claim("w/1")
    assert await store.release("j1", "w/1")
    job = await store.get("j1", "acme")
    assert job is not None and (job.state, job.owner, job.attempts) == ("queued", None, 0)


async def test_stale_jobs_are_requeued_then_given_up(store: SQLJobStore) -> None:
    await store.create(new_job("j1"))
    await store.create(new_job("fresh"))
    await store.claim("w/dead")
    await store.claim("w/alive")
    age_heartbeat(store, "j1", 3600)

    changed = await store.requeue_stale(time.time() - 30, max_attempts=2)
    assert [(j.id, j.state) for j in changed] == [("j1", "queued")]
    assert (await store.get("fresh", "acme")).state == "running"  # type: ignore[union-attr]
    assert not await store.heartbeat("j1", "w/dead", {})  # the dead worker lost its claim

    again = await store.claim("w/2")
    assert again is not None and (again.id, again.attempts) == ("j1", 2)
    age_heartbeat(store, "j1", 3600)
    changed = await store.requeue_stale(time.time() - 30, max_attempts=2)
    assert [(j.id, j.state) for j in changed] == [("j1", "failed")]
    assert changed[0].error is not None and "2 times" in changed[0].error
    assert await store.requeue_stale(time.time() - 30, max_attempts=2) == []


async def test_concurrent_claimers_take_each_job_exactly_once(tmp_path: Path, store: SQLJobStore) -> None:
    now = time.time()
    for i in range(60):
        await store.create(new_job(f"j{i:02d}", created_at=now + i / 1000))
    # Four "processes" (connection pools of their own), four claimers each, claiming until the queue is empty.
    stores = [store, *[await another_process(store, tmp_path) for _ in range(3)]]
    claimed: dict[str, list[str]] = {}

    async def claimer(s: SQLJobStore, name: str) -> None:
        while (job := await s.claim(name)) is not None:
            claimed.setdefault(job.id, []).append(name)

    try:
        await asyncio.gather(*(claimer(s, f"p{p}/c{c}") for p, s in enumerate(stores) for c in range(4)))
    finally:
        for other in stores[1:]:
            await other.aclose()
    assert sorted(claimed) == [f"j{i:02d}" for i in range(60)]
    assert all(len(owners) == 1 for owners in claimed.values()), {k: v for k, v in claimed.items() if len(v) > 1}
    assert len({owners[0] for owners in claimed.values()}) > 1  # the claims really were spread out
    for job_id, owners in claimed.items():
        job = await store.get(job_id, "acme")
        assert job is not None and (job.state, job.owner, job.attempts) == ("running", owners[0], 1)


async def test_concurrent_sweepers_requeue_each_stale_job_once(tmp_path: Path, store: SQLJobStore) -> None:
    for i in range(20):
        await store.create(new_job(f"s{i:02d}"))
        assert await store.claim(f"dead/{i}") is not None
        age_heartbeat(store, f"s{i:02d}", 3600)
    others = [await another_process(store, tmp_path) for _ in range(3)]
    try:
        swept = await asyncio.gather(*(s.requeue_stale(time.time() - 30, max_attempts=3) for s in [store, *others]))
    finally:
        for other in others:
            await other.aclose()
    requeued = sorted(job.id for batch in swept for job in batch)
    assert requeued == [f"s{i:02d}" for i in range(20)]  # each once, by one sweeper or another
    assert all(job.state == "queued" and job.owner is None for batch in swept for job in batch)


async def test_jobs_share_the_state_database(store: SQLJobStore, tmp_path: Path) -> None:
    # On SQLite the jobs sit in the data directory's `state.sqlite3`, beside the API keys.
    await store.create(new_job("j1"))
    tables = store.db.run_sync(lambda conn: set(sa.inspect(conn).get_table_names()))
    assert {"jobs", "api_keys", "usage"} <= tables
    if store.db.dialect == "sqlite":
        assert store.db.engine.url.database == str(tmp_path / "state.sqlite3")
        assert not (tmp_path / "jobs.sqlite3").exists()


# --- the worker -----------------------------------------------------------------------


async def test_worker_runs_jobs_records_progress_and_discards(store: SQLJobStore) -> None:
    runner = Runner()
    worker = JobWorker(store, runner, concurrency=2, poll_s=5, heartbeat_s=0.05, stale_s=1)
    await worker.start()
    try:
        await store.create(new_job("ok", echo="hello", sleep=0.2))
        await store.create(new_job("bad", **{"raise": "ragserve"}))
        await store.create(new_job("bug", **{"raise": "bug"}))
        worker.wake()  # poll_s is long: only the wake-up can start them this quickly
        ok = await wait_for(store, "ok", "succeeded", "failed", limit_s=3)
        bad = await wait_for(store, "bad", "succeeded", "failed", limit_s=3)
        bug = await wait_for(store, "bug", "succeeded", "failed", limit_s=3)
    finally:
        await worker.stop()
    assert (ok.state, ok.result, ok.progress, ok.attempts) == ("succeeded", {"echo": "hello"}, {"step": 2}, 1)
    assert (bad.state, bad.error) == ("failed", "the input was unreadable")
    assert bug.state == "failed" and bug.error is not None and "KeyError" in bug.error
    assert sorted(runner.discarded) == ["bad", "bug", "ok"]


async def test_worker_heartbeats_a_long_job_and_publishes_progress(store: SQLJobStore) -> None:
    runner = Runner()
    worker = JobWorker(store, runner, poll_s=0.05, heartbeat_s=0.05, stale_s=1)
    await store.create(new_job("long", sleep=0.6))
    await worker.start()
    try:
        running = await wait_for(store, "long", "running")
        await asyncio.sleep(0.3)
        later = await store.get("long", "acme")
        assert later is not None and later.state == "running"
        assert (later.heartbeat_at or 0) > (running.heartbeat_at or 0)
        assert later.progress == {"step": 1}
        await wait_for(store, "long", "succeeded")
    finally:
        await worker.stop()


async def test_worker_requeues_a_stale_job_and_completes_it(store: SQLJobStore) -> None:
    await store.create(new_job("orphan", echo="again"))
    await store.claim("dead-process/1")
    age_heartbeat(store, "orphan", 3600)
    runner = Runner()
    worker = JobWorker(store, runner, poll_s=0.05, heartbeat_s=0.05, stale_s=1)
    await worker.start()
    try:
        job = await wait_for(store, "orphan", "succeeded")
    finally:
        await worker.stop()
    assert (job.attempts, job.result) == (2, {"echo": "again"})
    assert runner.ran == ["orphan"]


async def test_stop_puts_running_jobs_back_in_the_queue(store: SQLJobStore) -> None:
    runner = Runner()
    worker = JobWorker(store, runner, poll_s=0.05, heartbeat_s=0.05, stale_s=1, grace_s=0.1)
    await store.create(new_job("slow", sleep=30))
    await worker.start()
    await asyncio.wait_for(runner.started.wait(), 5)
    await worker.stop()
    job = await store.get("slow", "acme")
    assert job is not None and (job.state, job.owner, job.attempts) == ("queued", None, 0)
    assert runner.discarded == []


async def test_worker_rejects_a_stale_limit_near_the_heartbeat(store: SQLJobStore) -> None:
    with pytest.raises(ValueError, match="stale_s"):
        JobWorker(store, Runner(), heartbeat_s=1, stale_s=1.5)


async def test_depth_counts_queued_and_running_jobs(store: SQLJobStore) -> None:
    assert await store.depth() == JobCounts(0, 0)
    for i in range(3):
        await store.create(Job(id=f"d{i}", scope=Scope("acme", "docs"), state="queued", payload={}))
    assert await store.depth() == JobCounts(queued=3, running=0)
    claimed = await store.claim("w1")
    assert claimed is not None
    assert await store.depth() == JobCounts(queued=2, running=1)
    await store.finish(claimed.id, "w1", JobOutcome("succeeded"), {})
    assert await store.depth() == JobCounts(queued=2, running=0)
