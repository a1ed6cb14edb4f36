"""Ingestion jobs on Celery: the API queues, `ragserve worker` processes run them.

With `RAGSERVE_QUEUE_URL=redis://…` an API process does not run jobs itself: it creates the
job row (the job store stays the truth about every job) and sends one task per job. A
task claims the oldest queued job from the store and runs it to its end, with the same
heartbeats and atomic claims as the in-process worker, so a task delivered twice claims
nothing the second time.

Delivery is at least once: tasks are acknowledged after they finish (`acks_late`), a
worker process that dies hands its task back (`task_reject_on_worker_lost`), and a broker
that never heard back redelivers after the visibility timeout. Independently, every API
process sweeps the store: a running job whose heartbeat stops for `RAGSERVE_JOB_STALE_S`
is re-queued (failed after `RAGSERVE_JOB_MAX_RETRIES` retries) and sent to the queue again.
Writes are per document and idempotent (content hashes), so a job that runs again after a
crash leaves every document complete exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown
from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from ragserve.observability.metrics import MULTIPROC_ENV, prepare_multiprocess_dir
from ragserve.settings import Settings

log = logging.getLogger(__name__)

TASK = "ragserve.ingest.run_job"
QUEUE = "ragserve-ingest"


def make_celery(settings: Settings) -> Celery:
    if not settings.queue_url:
        raise ValueError("make_celery needs RAGSERVE_QUEUE_URL")
    app = Celery("ragserve", broker=settings.queue_url, set_as_current=False)
    limit = settings.job_time_limit_s
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds only the task it runs
        worker_max_tasks_per_child=100,  # bounded memory growth over a long life
        task_soft_time_limit=limit,
        task_time_limit=limit + 30,
        # Longer than any job may run, or the broker would hand a running task to a second worker.
        broker_transport_options={"visibility_timeout": int(limit + 60)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


class Dispatcher:
    """The API side: one task per queued job, sent off the event loop."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def submit(self) -> None:
        """Ask a worker to run the oldest queued job (called from the loop; never blocks it)."""
        asyncio.get_running_loop().run_in_executor(None, self._send)

    def _send(self) -> None:
        try:
            self.app.send_task(TASK, queue=QUEUE)
        except Exception:  # the job stays queued; the next sweep or upload sends it again
            log.exception("could not send an ingestion task to the queue")


def register_tasks(app: Celery, settings: Settings) -> None:
    """The worker side: the task that runs one queued job."""

    @app.task(name=TASK, bind=True, max_retries=settings.job_max_retries)  # type: ignore[untyped-decorator]
    def run_job(task: Task[Any, Any]) -> bool:
        return _runtime(settings).run()

    @worker_process_init.connect(weak=False)  # type: ignore[untyped-decorator]
    def warm(**_: Any) -> None:
        # Load the model when a worker process starts, not inside its first job.
        _runtime(settings).open()


class _Runtime:
    """What one worker process needs across tasks: an event loop, the RAG and the job store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.worker: Any = None

    def open(self) -> None:
        if self.worker is None:
            self.worker = self.loop.run_until_complete(_open_worker(self.settings))

    def run(self) -> bool:
        self.open()
        ran: bool = self.loop.run_until_complete(self.worker.run_one())
        return ran


async def _open_worker(settings: Settings) -> Any:
    from ragserve.ingest.jobs import JobWorker
    from ragserve.ingest.upload_jobs import open_runner
    from ragserve.rag import RAG

    rag = await RAG.from_settings(settings)
    store, uploads = await open_runner(settings, rag.pipeline)
    return JobWorker(
        store,
        uploads,
        concurrency=0,
        stale_s=settings.job_stale_s,
        heartbeat_s=min(1.0, settings.job_stale_s / 4),
        max_attempts=settings.job_max_retries + 1,
    )


_runtimes: dict[int, _Runtime] = {}


def _runtime(settings: Settings) -> _Runtime:
    # One per worker process (prefork children build their own after the fork).
    pid = os.getpid()
    if pid not in _runtimes:
        _runtimes[pid] = _Runtime(settings)
    return _runtimes[pid]


def run_worker(settings: Settings, concurrency: int, metrics_port: int = 0) -> None:
    """`ragserve worker`: a Celery worker (prefork, `concurrency` processes) running ingestion jobs.

    With `metrics_port`, its processes' metrics (`rag_ingest_job_seconds`, `rag_ingest_chunks_total`,
    embedder and store breakers) are served at `http://<host>:<port>/metrics`, merged across them.
    """
    created = prepare_multiprocess_dir()  # before the pool forks: every child writes its samples there
    try:
        if metrics_port:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            start_http_server(metrics_port, addr=settings.host, registry=registry)
        app = make_celery(settings)
        register_tasks(app, settings)
        app.worker_main(
            [
                "worker",
                f"--concurrency={concurrency}",
                "--pool=prefork",
                f"--queues={QUEUE}",
                f"--loglevel={settings.log_level.upper()}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


@worker_process_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
def _forget_process(**_: Any) -> None:
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
