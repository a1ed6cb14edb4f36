"""Probes and status: unauthenticated, cheap, quiet.

`/health/live` touches nothing; `/health/ready` asks each dependency and says which one
failed; `/status` is for people: versions, configuration without secrets, counts.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ragserve import __version__
from ragserve.api.deps import RagDep
from ragserve.errors import RagserveError
from ragserve.rag import RAG
from ragserve.relational.database import Database
from ragserve.settings import Settings, public_summary

router = APIRouter(tags=["health"])

REPORTED_PACKAGES = ("fastapi", "uvicorn", "onnxruntime", "torch", "tantivy", "hnswlib", "pydantic")


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up. Touches no dependency."""
    return {"status": "ok"}


@router.get("/health/ready", response_model=None)
async def ready(request: Request, rag: RagDep) -> JSONResponse:
    """Model loaded and warmed up, store reachable and on this schema; 503 naming the failing check otherwise."""
    checks = await _readiness(request, rag)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/health", response_model=None)
async def health(request: Request, rag: RagDep) -> JSONResponse:
    """A one-glance summary: readiness, version and uptime."""
    checks = await _readiness(request, rag)
    ok = all(v == "ok" for v in checks.values())
    body = {
        "status": "ok" if ok else "not_ready",
        "version": __version__,
        "uptime_s": round(time.monotonic() - request.app.state.started, 3),
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/status")
async def status(request: Request, rag: RagDep) -> dict[str, Any]:
    """Versions, configuration (secrets masked), document and chunk counts, dependency states."""
    settings: Settings = request.app.state.settings
    checks = await _readiness(request, rag)
    try:
        totals = await rag.totals()
        counts: dict[str, Any] = {"documents": totals.documents, "chunks": totals.chunks}
    except RagserveError as exc:
        counts = {"error": exc.message}
    return {
        "cache": await _cache_status(rag),
        "version": __version__,
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in REPORTED_PACKAGES},
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - request.app.state.started, 3),
        "ready": all(v == "ok" for v in checks.values()),
        "dependencies": checks,
        "circuits": rag.breakers.snapshot(),
        "components": rag.components(),
        "counts": counts,
        "configuration": public_summary(settings),
    }


async def _readiness(request: Request, rag: RAG) -> dict[str, str]:
    """`rag.readiness()`, plus "database" when the relational schema is behind this release.

    A replica on a schema it expects tables or columns of would fail requests, so it takes
    no traffic until the operator migrates. A schema ahead of this release is a newer
    release rolling out (migrations add, old code ignores), so it stays ready; and an
    unreachable database is left to the requests that need it: every replica shares it,
    and failing readiness would take them all out of service at once.
    """
    checks = await rag.readiness()
    db = getattr(getattr(request.app.state, "keys", None), "db", None)  # the ApiKeys' database (app lifespan)
    if isinstance(db, Database):
        try:
            behind = await asyncio.to_thread(db.schema_status) == "behind"
        except RagserveError:
            behind = False  # unreachable: see above
        if behind:
            checks["database"] = "schema behind this release: run 'ragserve db upgrade'"
    return checks


async def _cache_status(rag: RAG) -> dict[str, Any]:
    if rag.query_cache is None:
        return {"enabled": False}
    cache = rag.query_cache.cache
    status: dict[str, Any] = {"enabled": True, "backend": cache.name}
    try:
        stats = await cache.stats()
        status |= {"entries": stats.entries, "bytes": stats.bytes}
    except RagserveError as exc:
        status["error"] = exc.message
    semantic = rag.query_cache.semantic
    status["semantic_entries"] = semantic.size() if semantic is not None else None
    return status


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
