"""`create_app()`: the FastAPI application, built on demand (nothing happens at import)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ragserve import __version__
from ragserve.api.errors import install_error_handlers
from ragserve.api.middleware import BodyLimitMiddleware, JsonBodyMiddleware, RequestIdMiddleware
from ragserve.api.observability import ObservabilityMiddleware
from ragserve.api.routes import documents, health, jobs, keys, metrics, openai, query, uploads
from ragserve.ingest.upload_jobs import open_uploads
from ragserve.observability.logging import configure_logging
from ragserve.observability.tracing import TracingMiddleware, configure_tracing
from ragserve.rag import RAG
from ragserve.security.gate import RATE_HEADERS
from ragserve.security.service import Security
from ragserve.settings import Settings, load_settings

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, rag: RAG | None = None) -> FastAPI:
    """Build the app. A given `rag` is used as is (and not closed); otherwise one is built from settings."""
    settings = settings or (rag.settings if rag is not None else load_settings())
    configure_logging(settings)

    configure_tracing()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = rag is None
        app.state.rag = rag if rag is not None else await RAG.from_settings(settings)
        security = Security.from_settings(settings, app.state.rag.breakers)
        app.state.authenticator, app.state.gate, app.state.keys = security.authenticator, security.gate, security.keys
        warm_up = asyncio.create_task(_warm_up(app.state.rag, settings))
        try:
            async with open_uploads(settings, app.state.rag.pipeline) as app.state.uploads:
                yield
        finally:
            warm_up.cancel()
            await security.aclose()
            if owned:
                await app.state.rag.aclose()

    app = FastAPI(
        title="ragserve",
        version=__version__,
        description="Retrieval-augmented answers with cited sources.",
        lifespan=lifespan,
        # Our own middleware traces each request (X-Trace-ID, route-named spans) and counts it
        # in Prometheus; FastAPI's built-in telemetry would do both a second time per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.started = time.monotonic()
    install_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        path_limits={uploads.UPLOAD_PATH: settings.max_upload_bytes},
    )
    # Outside the body limit, so its 413s are counted and logged; inside the request id.
    app.add_middleware(ObservabilityMiddleware)
    app.add_middleware(TracingMiddleware)
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID", "traceparent"],
            expose_headers=["X-Request-ID", "X-Trace-ID", "X-Cache", "Retry-After", *RATE_HEADERS],
        )
    app.include_router(query.router)
    app.include_router(openai.router)
    app.include_router(uploads.router)
    app.include_router(documents.router)
    app.include_router(jobs.router)
    app.include_router(keys.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")

    return app


async def _warm_up(rag: RAG, settings: Settings) -> None:
    """Readiness stays 503 until one query has run end to end (model loaded, indexes paged in)."""
    if not settings.warmup:
        rag.warmed = True
    else:
        try:
            await rag.warm_up()
        except Exception:
            log.exception("warm-up failed; /health/ready stays 503")
            return
    if settings.cache_warmup_queries:
        # After readiness: traffic is served meanwhile, and these only fill caches.
        asked = await rag.warm_caches(settings.cache_warmup_queries)
        log.info("cache warm-up asked %d recent questions", asked)
