"""Dependency aliases that make route signatures read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ragserve.ingest.upload_jobs import Uploads
from ragserve.rag import RAG
from ragserve.settings import Settings


async def get_rag(request: Request) -> RAG:
    rag: RAG = request.app.state.rag
    return rag


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


async def get_request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


RagDep = Annotated[RAG, Depends(get_rag)]
RequestId = Annotated[str, Depends(get_request_id)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
