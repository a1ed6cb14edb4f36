"""`Uploads`: take uploaded files, ingest small batches at once and queue large ones as jobs.

A queued upload's files are staged under `<data_dir>/uploads/<job id>/` before its job row
exists, so any process's worker that claims the job finds them, and they are deleted once
the job is finished for good.

    async with open_uploads(settings, rag.pipeline) as uploads:
        outcome = await uploads.receive(rag.scope("docs"), files, metadata={})
        if isinstance(outcome, Job):
            print("queued", outcome.id)
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Protocol, cast, get_args

from ragserve.errors import NotFoundError
from ragserve.ingest.jobs import Job, JobOutcome, JobStore, JobWorker, ProgressSink
from ragserve.ingest.jobs_sql import SQLJobStore
from ragserve.ingest.parse import Kind
from ragserve.ingest.pipeline import IngestPipeline
from ragserve.ingest.upload import (
    FileError,
    StagedFile,
    UploadProgress,
    UploadReport,
    check_upload,
    ingest_uploads,
    rejection,
    sanitize_filename,
    too_large,
)
from ragserve.settings import Settings
from ragserve.types import Metadata, Scope

UPLOADS_DIR = "uploads"


class IncomingFile(Protocol):
    """One file of a request as the web framework holds it (Starlette's `UploadFile` is one)."""

    filename: str | None
    size: int | None

    async def read(self, size: int = -1) -> bytes: ...


class Uploads:
    """The upload path of the core; also the `JobRunner` of upload jobs."""

    def __init__(
        self,
        store: JobStore,
        pipeline: IngestPipeline,
        uploads_dir: Path,
        *,
        max_file_bytes: int,
        inline_bytes: int,
        on_enqueue: Callable[[], None] | None = None,
        parse_timeout_s: float | None = None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.uploads_dir = uploads_dir
        self.max_file_bytes = max_file_bytes
        self.parse_timeout_s = parse_timeout_s  # per file, in jobs
        self.inline_bytes = inline_bytes
        self.on_enqueue = on_enqueue

    async def receive(
        self, scope: Scope, files: Sequence[IncomingFile], metadata: Metadata | None = None
    ) -> UploadReport | Job:
        """Ingest `files` now when they total at most `inline_bytes`, else queue a job and return it.

        Raises the error of `rejection()` when no file can be ingested at all.
        """
        total = sum(f.size or 0 for f in files)
        job_id = None if total <= self.inline_bytes else uuid.uuid4().hex
        try:
            staged, errors = await self.accept(files, job_id=job_id)
            if not staged:
                raise rejection(errors)
            if job_id is None:
                report = await ingest_uploads(
                    self.pipeline, scope, staged, metadata=metadata, max_file_bytes=self.max_file_bytes
                )
                report.errors[:0] = errors
                if not report.documents:
                    raise rejection(report.errors)
                return report
            return await self.enqueue(upload_job(job_id, scope, staged, metadata, errors))
        except BaseException:
            if job_id is not None:
                await self._remove(job_id)
            raise

    async def accept(
        self, files: Sequence[IncomingFile], *, job_id: str | None = None
    ) -> tuple[list[StagedFile], list[FileError]]:
        """Check each file's size and format; with a `job_id`, stage the good ones on disk."""
        staged: list[StagedFile] = []
        errors: list[FileError] = []
        for index, incoming in enumerate(files):
            filename = sanitize_filename(incoming.filename)
            if incoming.size is not None and incoming.size > self.max_file_bytes:
                errors.append(too_large(filename, incoming.size, self.max_file_bytes))
                continue
            checked = await asyncio.to_thread(
                check_upload, await incoming.read(), filename, max_bytes=self.max_file_bytes
            )
            if isinstance(checked, FileError):
                errors.append(checked)
            elif job_id is None:
                staged.append(checked)
            else:
                path = self.uploads_dir / job_id / f"{index:04d}"
                await asyncio.to_thread(_write, path, checked.read())
                staged.append(StagedFile(checked.filename, checked.format, checked.size, path=path))
        return staged, errors

    async def enqueue(self, job: Job) -> Job:
        await self.store.create(job)
        if self.on_enqueue is not None:
            self.on_enqueue()
        return job

    async def job(self, job_id: str, scope: Scope) -> Job:
        job = await self.store.get(job_id, scope.tenant)
        if job is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return job

    # ------------------------------------------------------------ JobRunner

    async def run(self, job: Job, report: ProgressSink) -> JobOutcome:
        directory = self.uploads_dir / job.id
        files = [
            StagedFile(f["filename"], _kind(f["format"]), int(f["size"]), path=directory / f["name"])
            for f in job.payload["files"]
        ]
        errors = [FileError(**e) for e in job.errors]
        result = await ingest_uploads(
            self.pipeline,
            job.scope,
            files,
            metadata=job.payload.get("metadata") or {},
            max_file_bytes=self.max_file_bytes,
            on_progress=lambda p: report(p.as_dict()),
            parse_timeout_s=self.parse_timeout_s,
        )
        errors.extend(result.errors)
        return JobOutcome(
            "succeeded" if result.documents else "failed",
            errors=[asdict(e) for e in errors],
            result=result.summary(),
            error=None if result.documents else "no file could be ingested",
        )

    async def discard(self, job: Job) -> None:
        await self._remove(job.id)

    async def _remove(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.uploads_dir / job_id, True)


def upload_job(
    job_id: str, scope: Scope, files: Sequence[StagedFile], metadata: Metadata | None, errors: Sequence[FileError]
) -> Job:
    """A queued job for files staged under the job's directory (as `Uploads.accept` stages them)."""
    return Job(
        id=job_id,
        scope=scope,
        state="queued",
        payload={
            "files": [
                {"filename": f.filename, "format": f.format, "size": f.size, "name": f.path.name if f.path else ""}
                for f in files
            ],
            "metadata": metadata or {},
        },
        progress=UploadProgress(files_total=len(files)).as_dict(),
        errors=[asdict(e) for e in errors],
    )


async def open_runner(settings: Settings, pipeline: IngestPipeline) -> tuple[JobStore, Uploads]:
    """The job store (the relational database) and the upload runner over it (an API process or a queue worker)."""
    store = await SQLJobStore.open(settings.database_url, settings.data_dir)
    uploads = Uploads(
        store,
        pipeline,
        settings.data_dir / UPLOADS_DIR,
        max_file_bytes=settings.max_file_bytes,
        inline_bytes=settings.upload_inline_bytes,
        parse_timeout_s=settings.job_parse_timeout_s,
    )
    return store, uploads


@asynccontextmanager
async def open_uploads(settings: Settings, pipeline: IngestPipeline) -> AsyncIterator[Uploads]:
    """Uploads, with their jobs run here (`job_workers` at a time) or, with a queue URL, by `ragserve worker`s.

    Either way this process sweeps the store: a job whose worker went silent is re-queued
    (and, with a queue, sent to it again).
    """
    store, uploads = await open_runner(settings, pipeline)
    stale_s, max_attempts = settings.job_stale_s, settings.job_max_retries + 1
    if settings.queue_url:
        from ragserve.worker.celery_app import Dispatcher, make_celery

        dispatcher = Dispatcher(make_celery(settings))
        worker = JobWorker(
            store,
            uploads,
            concurrency=0,
            stale_s=stale_s,
            max_attempts=max_attempts,
            on_requeued=lambda _: dispatcher.submit(),
        )
        uploads.on_enqueue = dispatcher.submit
    else:
        worker = JobWorker(store, uploads, concurrency=settings.job_workers, stale_s=stale_s, max_attempts=max_attempts)
        uploads.on_enqueue = worker.wake
    await worker.start()
    try:
        yield uploads
    finally:
        await worker.stop()
        await store.aclose()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _kind(value: str) -> Kind:
    if value not in get_args(Kind):
        raise ValueError(f"unknown format {value!r}")
    return cast(Kind, value)
