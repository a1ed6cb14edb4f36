"""An app served in process: its lifespan run (ASGITransport sends no lifespan events), a client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from ragserve.api.app import create_app
from ragserve.rag import RAG
from ragserve.settings import Settings


@asynccontextmanager
async def serve(
    settings: Settings, rag: RAG, app: FastAPI | None = None, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """`create_app(settings, rag=rag)` (or `app`), started, with an httpx client on it.

    `raise_app_exceptions=False` lets a test see the 500 the server error handler answers
    instead of the exception it re-raises for the server to log.
    """
    app = app or create_app(settings, rag=rag)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client
