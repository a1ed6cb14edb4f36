"""CORS: off by default; with an allow-list, only the listed origins get the headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from asgi import serve

from ragserve.errors import ConfigurationError
from ragserve.rag import RAG
from ragserve.settings import Settings, load_settings

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


async def test_cors_off_by_default(shared_rag: RAG, make_data_dir: Callable[[], Path]) -> None:
    settings = Settings(data_dir=make_data_dir(), warmup=False)
    async with serve(settings, shared_rag) as client:
        r = await client.get("/health/live", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in r.headers


async def test_only_listed_origins(shared_rag: RAG, make_data_dir: Callable[[], Path]) -> None:
    settings = Settings(data_dir=make_data_dir(), warmup=False, cors_origins=["https://app.example.com"])
    async with serve(settings, shared_rag) as client:
        ok = await client.options("/v1/query", headers={"Origin": "https://app.example.com", **PREFLIGHT})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        other = await client.options("/v1/query", headers={"Origin": "https://evil.example.net", **PREFLIGHT})
        assert other.headers.get("access-control-allow-origin") is None
        simple = await client.get("/health/live", headers={"Origin": "https://app.example.com"})
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_a_wildcard_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="exact origins"):
        load_settings(cors_origins=["*"])
