"""Ingestion jobs on Celery over a real Redis: `ragserve worker` processes run what the API queues.

A worker killed in the middle of a job: the API's sweep re-queues the job once its heartbeat
stops, sends it to the queue again, another worker runs it, and every document ends complete
exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi import serve
from servers import free_port

from ragserve.rag import RAG
from ragserve.settings import Settings
from ragserve.testing.redis_process import RedisProcess
from secrets_registry import register_log_file

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

STALE_S = 3.0


def markdown(i: int, paragraphs: int) -> bytes:
    body = "\n\n".join(
        f"Paragraph {p} of report {i}: the harbour pilot {i} boards vessel {p} at dawn and checks the ballast tanks, "
        f"the draught marks and the radio log before the tide turns at berth {i * 100 + p}."
        for p in range(paragraphs)
    )
    return f"# Report {i}\n\n{body}\n".encode()


class Workers:
    """`ragserve worker` processes on one data directory and queue; each in its own process group."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = register_log_file(self.data_dir / f"worker-{len(self.started)}.log")
        self.logs.append(log)
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ragserve.cli",
                    "--data-dir",
                    str(self.data_dir),
                    "worker",
                    "--concurrency",
                    "1",
                    *args,
                ],
                env={**os.environ, **self.env},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def queue(redis_process: RedisProcess) -> str:
    return redis_process.url


@pytest.fixture
def settings(make_data_dir: Callable[[], Path], queue: str) -> Settings:
    return Settings(
        data_dir=make_data_dir(),
        queue_url=queue,
        upload_inline_bytes=0,  # every upload becomes a job
        job_stale_s=STALE_S,
        warmup=False,
    )


@pytest.fixture
def workers(settings: Settings, queue: str) -> Iterator[Workers]:
    env = {"RAGSERVE_QUEUE_URL": queue, "RAGSERVE_JOB_STALE_S": str(STALE_S), "RAGSERVE_LOG_LEVEL": "info"}
    pool = Workers(settings.data_dir, env)
    yield pool
    pool.stop_all()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with await RAG.from_settings(settings) as rag, serve(settings, rag) as client:
        yield client


async def upload(client: httpx.AsyncClient, files: dict[str, bytes]) -> str:
    r = await client.post(
        "/v1/documents/upload",
        files=[("files", (name, data, "text/markdown")) for name, data in files.items()],
        data={"collection": "reports"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def wait_job(
    client: httpx.AsyncClient,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    within_s: float,
    workers: Workers,
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if until(job):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {within_s}s: {job}\n{workers.output()}")


async def test_a_worker_runs_what_the_api_queues(client: httpx.AsyncClient, workers: Workers) -> None:
    metrics_port = free_port()
    workers.start("--metrics-port", str(metrics_port))
    job_id = await upload(client, {f"r{i}.md": markdown(i, 2) for i in range(3)})
    job = await wait_job(client, job_id, lambda j: j["state"] in ("succeeded", "failed"), within_s=120, workers=workers)
    assert job["state"] == "succeeded", job
    page = (await client.get("/v1/documents", params={"collection": "reports"})).json()
    assert page["total"] == 3
    hits = (await client.post("/v1/search", json={"query": "harbour pilot 2 ballast", "collection": "reports"})).json()
    assert hits["results"] and hits["results"][0]["document_id"] == "r2.md"
    async with httpx.AsyncClient(timeout=10) as direct:
        scraped = (await direct.get(f"http://127.0.0.1:{metrics_port}/metrics")).text  # the worker's own
    runs = [line for line in scraped.splitlines() if line.startswith('rag_ingest_job_seconds_count{stage="run"}')]
    assert runs and float(runs[0].split()[-1]) == 1.0, scraped[:2000]


async def test_a_worker_killed_mid_job_leaves_every_document_complete_once(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    files = {f"r{i}.md": markdown(i, 16) for i in range(120)}
    first = workers.start()
    job_id = await upload(client, files)
    await wait_job(client, job_id, lambda j: j["state"] == "running", within_s=120, workers=workers)
    await asyncio.sleep(1.5)  # well into the job: some documents written, most not
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["state"] == "running"
    workers.kill(first)
    killed_at = time.monotonic()
    workers.start()
    job = await wait_job(client, job_id, lambda j: j["state"] in ("succeeded", "failed"), within_s=180, workers=workers)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2  # the first run died, the second finished
    assert time.monotonic() - killed_at >= STALE_S  # re-queued only once its heartbeat went stale
    page = (await client.get("/v1/documents", params={"collection": "reports", "limit": 1000})).json()
    assert page["total"] == len(files)
    for doc in page["documents"]:
        assert doc["version"] == 1, doc  # written once: the rerun found it unchanged
    for doc in page["documents"]:
        assert doc["chunk_count"] == 4, doc  # whole: every chunk of it, none twice
    assert {doc["id"] for doc in page["documents"]} == set(files)
    hits = (await client.post("/v1/search", json={"query": "pilot 119 berth 11915", "collection": "reports"})).json()
    assert hits["results"][0]["document_id"] == "r119.md"  # written by the second run
