"""`create_app()`: the FastAPI application, built on demand (nothing happens at import)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ragserve import __version__
from ragserve.api.errors import install_error_handlers
from ragserve.api.middleware import BodyLimitMiddleware, JsonBodyMiddleware, RequestIdMiddleware
from ragserve.api.routes import documents, health, query
from ragserve.rag import RAG
from ragserve.settings import Settings, load_settings

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def create_app(settings: Settings | None = None, rag: RAG | None = None) -> FastAPI:
    """Build the app. A given `rag` is used as is (and not closed); otherwise one is built from settings."""
    settings = settings or (rag.settings if rag is not None else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = rag is None
        app.state.rag = rag if rag is not None else await RAG.from_settings(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.rag.aclose()

    app = FastAPI(
        title="ragserve",
        version=__version__,
        description="Retrieval-augmented answers with cited sources.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(query.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")

    return app
