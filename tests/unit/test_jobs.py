"""The SQLite job store and the job worker, against a real database file and a small runner."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragserve.errors import ParseError
from ragserve.ingest.jobs import Job, JobOutcome, JobWorker, ProgressSink
from ragserve.ingest.jobs_sqlite import SQLiteJobStore
from ragserve.types import Scope

SCOPE = Scope("acme", "docs")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteJobStore]:
    s = await SQLiteJobStore.open(tmp_path / "jobs.sqlite3")
    yield s
    await s.aclose()


def new_job(job_id: str, *, created_at: float | None = None, **payload: object) -> Job:
    return Job(id=job_id, scope=SCOPE, state="queued", payload=dict(payload), created_at=created_at or time.time())


def age_heartbeat(path: Path, job_id: str, seconds: float) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - ? WHERE id = ?", (seconds, job_id))


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


async def wait_for(store: SQLiteJobStore, job_id: str, *states: str, limit_s: float = 10) -> Job:
    deadline = time.monotonic() + limit_s
    while True:
        job = await store.get(job_id, SCOPE.tenant)
        assert job is not None
        if job.state in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job.state}"
        await asyncio.sleep(0.02)


# --- the store ------------------------------------------------------------------------


async def test_create_get_is_tenant_scoped(store: SQLiteJobStore) -> None:
    await store.create(new_job("j1", echo="hi"))
    job = await store.get("j1", "acme")
    assert job is not None
    assert (job.id, job.scope, job.state, job.payload, job.attempts) == ("j1", SCOPE, "queued", {"echo": "hi"}, 0)
    assert await store.get("j1", "other-tenant") is None
    assert await store.get("missing", "acme") is None


async def test_claims_take_the_oldest_first_and_never_twice(tmp_path: Path, store: SQLiteJobStore) -> None:
    now = time.time()
    for i in range(6):
        await store.create(new_job(f"j{i}", created_at=now + i))
    first = await store.claim("w/1")
    assert first is not None and first.id == "j0"
    assert (first.state, first.owner, first.attempts) == ("running", "w/1", 1)
    assert first.started_at is not None and first.heartbeat_at is not None

    # A second store on the same file stands in for another API process.
    other = await SQLiteJobStore.open(tmp_path / "jobs.sqlite3")
    try:
        claims = await asyncio.gather(*(s.claim(f"w/{i}") for i in range(10) for s in (store, other)))
    finally:
        await other.aclose()
    claimed = [job.id for job in claims if job is not None]
    assert sorted(claimed) == ["j1", "j2", "j3", "j4", "j5"]
    assert await store.claim("w/late") is None


async def test_updates_need_the_claim_token(store: SQLiteJobStore) -> None:
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


async def test_release_requeues_without_counting_an_attempt(store: SQLiteJobStore) -> None:
    await store.create(new_job("j1"))
    await store.claim("w/1")
    assert await store.release("j1", "w/1")
    job = await store.get("j1", "acme")
    assert job is not None and (job.state, job.owner, job.attempts) == ("queued", None, 0)


async def test_stale_jobs_are_requeued_then_given_up(tmp_path: Path, store: SQLiteJobStore) -> None:
    await store.create(new_job("j1"))
    await store.create(new_job("fresh"))
    await store.claim("w/dead")
    await store.claim("w/alive")
    age_heartbeat(tmp_path / "jobs.sqlite3", "j1", 3600)

    changed = await store.requeue_stale(time.time() - 30, max_attempts=2)
    assert [(j.id, j.state) for j in changed] == [("j1", "queued")]
    assert (await store.get("fresh", "acme")).state == "running"  # type: ignore[union-attr]
    assert not await store.heartbeat("j1", "w/dead", {})  # the dead worker lost its claim

    again = await store.claim("w/2")
    assert again is not None and (again.id, again.attempts) == ("j1", 2)
    age_heartbeat(tmp_path / "jobs.sqlite3", "j1", 3600)
    changed = await store.requeue_stale(time.time() - 30, max_attempts=2)
    assert [(j.id, j.state) for j in changed] == [("j1", "failed")]
    assert changed[0].error is not None and "2 times" in changed[0].error
    assert await store.requeue_stale(time.time() - 30, max_attempts=2) == []


# --- the worker -----------------------------------------------------------------------


async def test_worker_runs_jobs_records_progress_and_discards(store: SQLiteJobStore) -> None:
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


async def test_worker_heartbeats_a_long_job_and_publishes_progress(store: SQLiteJobStore) -> None:
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


async def test_worker_requeues_a_stale_job_and_completes_it(tmp_path: Path, store: SQLiteJobStore) -> None:
    await store.create(new_job("orphan", echo="again"))
    await store.claim("dead-process/1")
    age_heartbeat(tmp_path / "jobs.sqlite3", "orphan", 3600)
    runner = Runner()
    worker = JobWorker(store, runner, poll_s=0.05, heartbeat_s=0.05, stale_s=1)
    await worker.start()
    try:
        job = await wait_for(store, "orphan", "succeeded")
    finally:
        await worker.stop()
    assert (job.attempts, job.result) == (2, {"echo": "again"})
    assert runner.ran == ["orphan"]


async def test_stop_puts_running_jobs_back_in_the_queue(store: SQLiteJobStore) -> None:
    runner = Runner()
    worker = JobWorker(store, runner, poll_s=0.05, heartbeat_s=0.05, stale_s=1, grace_s=0.1)
    await store.create(new_job("slow", sleep=30))
    await worker.start()
    await asyncio.wait_for(runner.started.wait(), 5)
    await worker.stop()
    job = await store.get("slow", "acme")
    assert job is not None and (job.state, job.owner, job.attempts) == ("queued", None, 0)
    assert runner.discarded == []


async def test_worker_rejects_a_stale_limit_near_the_heartbeat(store: SQLiteJobStore) -> None:
    with pytest.raises(ValueError, match="stale_s"):
        JobWorker(store, Runner(), heartbeat_s=1, stale_s=1.5)
