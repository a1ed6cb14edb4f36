"""GET /metrics: Prometheus exposition for the whole server (every worker), plus store totals."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from ragserve.api.deps import RagDep
from ragserve.observability.metrics import exposition
from ragserve.types import CollectionStats

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)


@router.get("/metrics")
async def metrics(request: Request, rag: RagDep) -> Response:
    totals: CollectionStats | None
    try:
        totals = await rag.totals()
    except Exception as exc:
        # A scrape must still report the request and error counters while the store is down.
        log.warning("store totals unavailable for /metrics: %s", exc)
        totals = None
    jobs: tuple[int, int] | None
    try:
        counts = await request.app.state.uploads.store.depth()
        jobs = (counts.queued, counts.running)
    except Exception as exc:
        log.warning("job counts unavailable for /metrics: %s", exc)
        jobs = None
    body, content_type = await asyncio.to_thread(exposition, totals, request.headers.get("accept", ""), jobs)
    return Response(body, media_type=content_type)
