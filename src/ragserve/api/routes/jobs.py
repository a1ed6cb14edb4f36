"""`GET /v1/jobs/{id}`: a background job's state, progress per stage, per-file errors and result.

A job of another tenant is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ragserve.api.access import AccessDep
from ragserve.api.deps import RagDep, UploadsDep
from ragserve.api.schemas import ErrorBody, JobPublic, error_responses
from ragserve.errors import NotFoundError
from ragserve.ingest.jobs import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(404, 422, 500, 503))


@router.get("/{job_id}", responses={404: {"model": ErrorBody}})
async def get_job(
    job_id: Annotated[str, Path(min_length=1, max_length=128)], access: AccessDep, rag: RagDep, uploads: UploadsDep
) -> JobPublic:
    access.require("ingest")
    caller = access.principal
    job = await uploads.job(job_id, rag.scope(tenant=caller.tenant))
    if not caller.may_use(job.scope.collection):
        raise NotFoundError(f"job {job_id!r} not found")
    return job_public(job)


def job_public(job: Job) -> JobPublic:
    return JobPublic.model_validate(
        {
            "id": job.id,
            "state": job.state,
            "collection": job.scope.collection,
            "attempts": job.attempts,
            "files": job.payload.get("files", []),
            "progress": job.progress,
            "errors": job.errors,
            "result": job.result,
            "error": job.error,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "heartbeat_at": job.heartbeat_at,
            "finished_at": job.finished_at,
        }
    )
