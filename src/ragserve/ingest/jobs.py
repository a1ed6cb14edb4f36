"""Background jobs: a `JobStore` every API process shares, and a `JobWorker` in each process.

A worker claims a queued job atomically, heartbeats it while a `JobRunner` works on it, and
records the outcome. Every change to a running job carries the claim token, so a worker
whose job was taken away from it (its heartbeat went stale and another process re-queued
the job) learns so and stops. A job that keeps killing its process fails after
`max_attempts` instead of circling forever.

    store = await SQLJobStore.open(settings.database_url, settings.data_dir)  # ragserve.ingest.jobs_sql
    worker = JobWorker(store, runner, concurrency=2)
    await worker.start()
    await store.create(job)
    worker.wake()  # run it now rather than at the next poll
    ...
    await worker.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ragserve.errors import RagserveError
from ragserve.observability.metrics import get_metrics
from ragserve.types import Scope

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed"]
FinalState = Literal["succeeded", "failed"]
FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed"})

Progress = dict[str, Any]
ProgressSink = Callable[[Progress], None]


@dataclass(slots=True)
class Job:
    """One unit of background work in a tenant's collection. `payload` is the runner's own data."""

    id: str
    scope: Scope
    state: JobState
    payload: dict[str, Any]
    progress: Progress = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    owner: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    heartbeat_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class JobCounts:
    queued: int
    running: int


@dataclass(frozen=True, slots=True)
class JobOutcome:
    state: FinalState
    errors: list[dict[str, str]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None


class JobStore(Protocol):
    """Where jobs live, shared by every process serving the same data.

    Claims are atomic: of two workers claiming at once, each gets a different job or none.
    Methods that change a running job take the claim token (`owner`) and return False when
    the job is no longer that claim's: re-queued, or finished by someone else.
    """

    async def create(self, job: Job) -> None: ...

    async def get(self, job_id: str, tenant: str) -> Job | None:
        """The job if it exists in `tenant`; another tenant's job is None, like a missing one."""
        ...

    async def claim(self, owner: str) -> Job | None:
        """The oldest queued job, now running under `owner`; None when nothing is queued."""
        ...

    async def heartbeat(self, job_id: str, owner: str, progress: Progress) -> bool: ...

    async def finish(self, job_id: str, owner: str, outcome: JobOutcome, progress: Progress) -> bool: ...

    async def release(self, job_id: str, owner: str) -> bool:
        """Put a running job back in the queue (a clean shutdown), without counting an attempt."""
        ...

    async def requeue_stale(self, heartbeat_before: float, max_attempts: int) -> list[Job]:
        """Re-queue running jobs whose last heartbeat is older than `heartbeat_before`, failing
        those that already had `max_attempts`. Returns the jobs changed, in their new state."""
        ...

    async def depth(self) -> JobCounts:
        """How many jobs wait and how many run now, across every process."""
        ...

    async def aclose(self) -> None: ...


class JobRunner(Protocol):
    """Does the work of a job. `report` takes progress as often as it changes; it is cheap."""

    async def run(self, job: Job, report: ProgressSink) -> JobOutcome: ...

    async def discard(self, job: Job) -> None:
        """Free what the job held (staged files); called once it is finished for good."""
        ...


class JobWorker:
    """Runs up to `concurrency` jobs at a time in this process, claimed from a shared store."""

    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        *,
        concurrency: int = 1,
        poll_s: float = 1.0,
        heartbeat_s: float = 1.0,
        stale_s: float = 30.0,
        max_attempts: int = 3,
        grace_s: float = 5.0,
        on_requeued: Callable[[Job], None] | None = None,
    ) -> None:
        """`concurrency=0` only sweeps: stale jobs are re-queued (and `on_requeued` told, e.g. to
        send them to a queue's workers) but nothing is claimed here."""
        if stale_s <= heartbeat_s * 2:
            raise ValueError("stale_s must be well above heartbeat_s, or live jobs would be re-queued")
        self._store = store
        self._runner = runner
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self._stale_s = stale_s
        self._max_attempts = max_attempts
        self._grace_s = grace_s
        self._on_requeued = on_requeued
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look for work now (a job was just enqueued in this process)."""
        self._wake.set()

    async def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.create_task(self._loop(), name="ragserve-job-worker")

    async def stop(self) -> None:
        """Stop claiming; give running jobs `grace_s` to finish, then put them back in the queue."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=self._grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._sweep()
                await self._fill()
            except Exception:  # a locked or missing database must not end the worker
                log.exception("job worker %s: store unavailable, retrying", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def _sweep(self) -> None:
        for job in await self._store.requeue_stale(time.time() - self._stale_s, self._max_attempts):
            if job.state == "failed":
                log.error("job %s failed: %s", job.id, job.error)
                await self._runner.discard(job)
            else:
                log.warning("job %s re-queued: its worker stopped heartbeating", job.id)
                if self._on_requeued is not None:
                    self._on_requeued(job)

    async def _fill(self) -> None:
        while len(self._running) < self._concurrency and not self._stopping:
            job = await self._store.claim(f"{self.name}/{uuid.uuid4().hex[:12]}")
            if job is None:
                return
            task = asyncio.create_task(self._execute(job), name=f"ragserve-job-{job.id}")
            self._running.add(task)
            task.add_done_callback(self._finished)

    async def run_one(self) -> bool:
        """Sweep, then claim and run one queued job to its end here (a queue worker's task).

        False when nothing was queued: another worker took it, or it already ran.
        """
        await self._sweep()
        job = await self._store.claim(f"{self.name}/{uuid.uuid4().hex[:12]}")
        if job is None:
            return False
        await self._execute(job)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    async def _execute(self, job: Job) -> None:
        owner = job.owner or ""
        latest: Progress = dict(job.progress)

        def report(progress: Progress) -> None:
            latest.clear()
            latest.update(progress)

        run = asyncio.create_task(self._runner.run(job, report))
        try:
            while not run.done():
                await asyncio.wait({run}, timeout=self._heartbeat_s)
                if not run.done() and not await self._beat(job.id, owner, latest):
                    log.warning("job %s was re-queued away from %s; abandoning this run", job.id, owner)
                    run.cancel()
                    with contextlib.suppress(BaseException):
                        await run
                    return
            outcome = _outcome_of(run, job)
        except asyncio.CancelledError:
            run.cancel()
            with contextlib.suppress(BaseException):
                await run
            with contextlib.suppress(Exception):
                await self._store.release(job.id, owner)
            raise
        job_seconds = get_metrics().ingest_job_seconds
        if job.started_at is not None:
            job_seconds.labels(stage="wait").observe(max(0.0, job.started_at - job.created_at))
            job_seconds.labels(stage="run").observe(max(0.0, time.time() - job.started_at))
        try:
            if await self._store.finish(job.id, owner, outcome, latest):
                await self._runner.discard(job)
        except Exception:  # unrecorded, the job goes stale and runs again elsewhere
            log.exception("job %s: could not record its outcome", job.id)

    async def _beat(self, job_id: str, owner: str, progress: Progress) -> bool:
        try:
            return await self._store.heartbeat(job_id, owner, progress)
        except Exception:  # a missed beat is harmless; only a stale one costs the job
            log.exception("job %s: heartbeat failed", job_id)
            return True


def _outcome_of(run: asyncio.Task[JobOutcome], job: Job) -> JobOutcome:
    if run.cancelled():
        return JobOutcome("failed", errors=list(job.errors), error="cancelled")
    exc = run.exception()
    if exc is None:
        return run.result()
    if isinstance(exc, RagserveError):
        message = exc.message
    else:
        log.error("job %s crashed", job.id, exc_info=exc)
        message = f"internal error ({type(exc).__name__}); see the server log"
    return JobOutcome("failed", errors=list(job.errors), error=message)
