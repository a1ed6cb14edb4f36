"""Probes and /status: what they report, and that readiness waits for the warm-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi import serve

from ragserve.errors import StoreError
from ragserve.rag import RAG
from ragserve.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def client(shared_rag: RAG) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(shared_rag.settings, shared_rag) as c:
        await wait_ready(c)
        yield c


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if (await client.get("/health/ready")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not ready in time")


async def test_live_touches_nothing_and_says_ok(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_ready_lists_every_check(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"store": "ok", "embedder": "ok", "warm_up": "ok"}}


async def test_health_summarises(client: httpx.AsyncClient) -> None:
    body = (await client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["version"]
    assert body["uptime_s"] >= 0


async def test_status_reports_versions_counts_and_configuration(
    client: httpx.AsyncClient, shared_rag: RAG, collection: str
) -> None:
    before = (await client.get("/status")).json()["counts"]
    r = await client.post(
        "/v1/documents", json={"collection": collection, "documents": [{"id": "a", "text": "Alpha beta gamma."}]}
    )
    assert r.status_code == 201
    status = (await client.get("/status")).json()
    assert status["counts"]["documents"] == before["documents"] + 1
    assert status["counts"]["chunks"] == before["chunks"] + 1
    assert status["ready"] is True
    assert status["dependencies"] == {"store": "ok", "embedder": "ok", "warm_up": "ok"}
    assert status["packages"]["fastapi"] and status["python"]
    assert status["components"]["embedder"]["model"] == "all-MiniLM-L6-v2"
    assert status["components"]["llm"]["provider"] == "extractive"
    assert status["configuration"]["top_k"] == shared_rag.settings.top_k


async def test_store_failure_makes_ready_503_naming_the_check(
    client: httpx.AsyncClient, shared_rag: RAG, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_ping() -> None:
        raise StoreError("embedded store unavailable: disk I/O error")

    monkeypatch.setattr(shared_rag.store, "ping", broken_ping)
    r = await client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["store"] == "embedded store unavailable: disk I/O error"
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health")).status_code == 503


async def test_ready_waits_for_the_warm_up(make_data_dir: object) -> None:
    data_dir: Path = make_data_dir()  # type: ignore[operator]
    rag = await RAG.from_settings(Settings(data_dir=data_dir))
    gate = asyncio.Event()
    real_warm_up = rag.warm_up

    async def slow_warm_up() -> None:
        await gate.wait()
        await real_warm_up()

    rag.warm_up = slow_warm_up  # type: ignore[method-assign]
    try:
        async with serve(rag.settings, rag) as c:
            r = await c.get("/health/ready")
            assert r.status_code == 503
            assert r.json()["checks"]["warm_up"] == "not done"
            assert (await c.get("/health/live")).status_code == 200
            gate.set()
            await wait_ready(c)
    finally:
        await rag.aclose()
