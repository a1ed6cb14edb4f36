"""Graceful shutdown: on SIGTERM a server finishes what it is doing and refuses new work."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import running_server

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_in_flight_requests_finish_and_refuses_new_ones(
    make_data_dir: Callable[[], Path], tmp_path: Path, workers: str
) -> None:
    # Enough text that embedding it takes seconds: the request is still running when SIGTERM comes.
    documents = [
        {"id": f"doc-{i}", "text": f"Document {i} talks about topic {i % 17} at some length. " * 20} for i in range(120)
    ]
    outcome: dict[str, Any] = {}

    def ingest(url: str) -> None:
        try:
            outcome["response"] = httpx.post(f"{url}/v1/documents", json={"documents": documents}, timeout=180)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    with running_server(make_data_dir(), tmp_path, "--workers", workers) as server:
        writer = threading.Thread(target=ingest, args=(server.url,))
        writer.start()
        time.sleep(1.5)
        assert writer.is_alive(), "the request finished before the signal; make it larger"
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        with pytest.raises(httpx.TransportError):  # the listening socket is closed
            httpx.get(f"{server.url}/health/live", timeout=5)
        writer.join(timeout=180)
        # uvicorn re-raises the signal once it has shut down, so its exit status says SIGTERM.
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM), server.output()
    assert "error" not in outcome, outcome.get("error")
    response: httpx.Response = outcome["response"]
    assert response.status_code == 201, response.text
    assert [r["status"] for r in response.json()["results"]] == ["created"] * len(documents)
