"""The documents resource: add texts, list, inspect and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ragserve.api.access import AccessDep
from ragserve.api.deps import RagDep, RequestId
from ragserve.api.schemas import (
    COMMON_ERRORS,
    DocumentDeleted,
    DocumentPage,
    DocumentPublic,
    DocumentsCreate,
    DocumentsCreated,
    DocumentWritePublic,
    error_responses,
)
from ragserve.observability.metrics import get_metrics
from ragserve.rag import MAX_OFFSET
from ragserve.types import NAME_PATTERN, DocumentInput

router = APIRouter(prefix="/v1/documents", tags=["documents"], responses=error_responses(*COMMON_ERRORS, 404))
Collection = Annotated[str | None, Query(pattern=NAME_PATTERN, description="collection; the default when absent")]
DocumentId = Annotated[str, Path(min_length=1, max_length=512)]


@router.post("", status_code=201)
async def add_documents(
    body: DocumentsCreate, access: AccessDep, rag: RagDep, request_id: RequestId
) -> DocumentsCreated:
    scope = await access.scope("ingest", body.collection)
    inputs = [DocumentInput(d.text, d.id, d.title, d.source, d.metadata) for d in body.documents]
    report = await rag.add_documents(inputs, scope)
    get_metrics().ingest_chunks.inc(report.chunks)
    return DocumentsCreated(
        collection=scope.collection,
        results=[
            DocumentWritePublic(id=r.id, status=r.status, version=r.version, chunks=r.chunk_count)
            for r in report.results
        ],
        chunks=report.chunks,
        request_id=request_id,
    )


@router.get("")
async def list_documents(
    access: AccessDep,
    rag: RagDep,
    collection: Collection = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DocumentPage:
    scope = await access.scope("query", collection)
    docs, total = await rag.list_documents(scope, limit=limit, offset=offset)
    return DocumentPage(
        collection=scope.collection,
        documents=[DocumentPublic.from_info(d) for d in docs],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{document_id:path}")
async def get_document(
    document_id: DocumentId, access: AccessDep, rag: RagDep, collection: Collection = None
) -> DocumentPublic:
    return DocumentPublic.from_info(await rag.get_document(document_id, await access.scope("query", collection)))


@router.delete("/{document_id:path}")
async def delete_document(
    document_id: DocumentId, access: AccessDep, rag: RagDep, request_id: RequestId, collection: Collection = None
) -> DocumentDeleted:
    await rag.delete_document(document_id, await access.scope("ingest", collection))
    return DocumentDeleted(id=document_id, deleted=True, request_id=request_id)
