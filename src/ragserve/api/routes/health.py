"""Probes: cheap, unauthenticated, quiet."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ragserve.api.deps import RagDep

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up. Touches no dependency."""
    return {"status": "ok"}


@router.get("/health/ready", response_model=None)
async def ready(rag: RagDep) -> JSONResponse:
    """Model loaded and store reachable; 503 naming the failing check otherwise."""
    checks = await rag.readiness()
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)
