"""Real `ragserve serve` processes for tests that need a socket, several workers or signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from secrets_registry import register_log_file

READY_TIMEOUT_S = 120.0


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, as an orchestrator sends it; the exit code once the server is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
            pytest.fail(f"server did not stop on SIGTERM:\n{self.output()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server {server.url} exited with {server.process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"server {server.url} not ready after {READY_TIMEOUT_S}s:\n{server.output()}")


def start_server(
    data_dir: Path,
    workdir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    name: str = "server",
    port: int | None = None,
    new_session: bool = False,
) -> Server:
    """`ragserve --data-dir DATA_DIR serve --port <free> ARGS...`, started (not yet ready: see `wait_ready`).

    Its log file is registered for the session's scan for secrets in logs (`secrets_registry`).
    `port`: a given one (to restart a server where it was) instead of a free one. `new_session`:
    the server leads a process group of its own, so a test can SIGKILL it with its gunicorn
    workers (`os.killpg`), as a crashing container takes every process with it.
    """
    port = port or free_port()
    log = register_log_file(workdir / f"{name}.log")
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | dict(env or {})
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ragserve.cli", "--data-dir", str(data_dir), "serve", "--port", str(port), *args],
            cwd=workdir,  # no stray .env from the working directory
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    return Server(f"http://127.0.0.1:{port}", process, log)


@contextmanager
def running_server(
    data_dir: Path, workdir: Path, *args: str, env: Mapping[str, str] | None = None, name: str = "server"
) -> Iterator[Server]:
    """`ragserve --data-dir DATA_DIR serve --port <free> ARGS...`, ready, stopped on exit."""
    server = start_server(data_dir, workdir, *args, env=env, name=name)
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()
