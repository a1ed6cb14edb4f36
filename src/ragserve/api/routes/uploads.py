"""`POST /v1/documents/upload`: multipart files, ingested at once when small, else queued as a job.

Status codes: 201 when the files were ingested now (files that failed are listed in
`errors`); 202 with a `Location` to poll when queued; 413 when every file was too large
(or the body is over `max_upload_bytes`), 415 when every file was of an unsupported format,
422 when no file could be ingested for other or mixed reasons, 400 for a bad `collection`
or `metadata`. The message of a 4xx names each file and why it failed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse

from ragserve.api.access import AccessDep
from ragserve.api.deps import RagDep, RequestId, UploadsDep
from ragserve.api.schemas import (
    FileErrorPublic,
    JobFilePublic,
    UploadAccepted,
    UploadCompleted,
    UploadedDocumentPublic,
    error_responses,
)
from ragserve.errors import InvalidInputError
from ragserve.ingest.jobs import Job
from ragserve.types import NAME_PATTERN

UPLOAD_PATH = "/v1/documents/upload"
MAX_METADATA_CHARS = 64 * 1024

router = APIRouter(tags=["documents"])


@router.post(
    UPLOAD_PATH,
    status_code=201,
    response_model=UploadCompleted,
    responses={
        202: {"model": UploadAccepted, "description": "queued as a job; poll the Location"},
        **error_responses(400, 413, 415, 422, 500, 503),
    },
)
async def upload_documents(
    files: Annotated[
        list[UploadFile],
        File(min_length=1, description="one or more files; each one's format is read from its content"),
    ],
    access: AccessDep,
    rag: RagDep,
    uploads: UploadsDep,
    request_id: RequestId,
    collection: Annotated[
        str | None, Form(pattern=NAME_PATTERN, description="collection; the default when absent")
    ] = None,
    metadata: Annotated[str | None, Form(description="a JSON object merged into every document's metadata")] = None,
) -> UploadCompleted | JSONResponse:
    rag.check_service()
    scope = await access.scope("ingest", collection)
    outcome = await uploads.receive(scope, files, _metadata(metadata))
    if isinstance(outcome, Job):
        status_url = f"/v1/jobs/{outcome.id}"
        accepted = UploadAccepted(
            job_id=outcome.id,
            status_url=status_url,
            state=outcome.state,
            collection=scope.collection,
            files=[JobFilePublic.model_validate(f) for f in outcome.payload["files"]],
            errors=[FileErrorPublic.model_validate(e) for e in outcome.errors],
            request_id=request_id,
        )
        return JSONResponse(accepted.model_dump(), status_code=202, headers={"Location": status_url})
    return UploadCompleted(
        collection=scope.collection,
        results=[UploadedDocumentPublic.model_validate(d, from_attributes=True) for d in outcome.documents],
        errors=[FileErrorPublic.model_validate(e, from_attributes=True) for e in outcome.errors],
        chunks=outcome.chunks,
        request_id=request_id,
    )


def _metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_CHARS:
        raise InvalidInputError(f"metadata is over {MAX_METADATA_CHARS} characters", field="metadata")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(f"metadata is not valid JSON: {exc}", field="metadata") from exc
    if not isinstance(value, dict):
        raise InvalidInputError("metadata must be a JSON object", field="metadata")
    return value
