"""What the HTTP layer adds to a query: a real server on loopback, a load generator in front.

Two measurements against one `ragserve serve` process (uvicorn, uvloop, httptools):

1. `POST /v1/query` (keyword mode, a small collection) sent one at a time over a kept-alive
   connection by a raw-socket client, so almost nothing but the server is timed. The
   response says how long the core took (`timings_ms.total`); overhead = round trip - core.
2. `wrk` (when installed) on `GET /health/live` and on the same `POST /v1/query`, for the
   latency distribution and throughput of the whole stack.

    python bench/http_overhead.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

DOCS = [
    {"id": f"doc-{i}", "text": f"Topic {i}: the server listens on port {8000 + i} unless RAGSERVE_PORT says otherwise."}
    for i in range(50)
]
QUERY = {"query": "which port does the server listen on", "mode": "keyword", "collection": "bench"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, port: int, *, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`ragserve serve` on `port` over `data_dir`, ready; its output goes to `log` (discarded without one)."""
    environment = {**os.environ, "RAGSERVE_LOG_LEVEL": "warning", "RAGSERVE_DATA_DIR": str(data_dir), **(env or {})}
    with open(log or os.devnull, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ragserve.cli", "serve", "--port", str(port)],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit("server did not become ready" + (f":\n{log.read_text(errors='replace')}" if log else ""))


def raw_request(path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def read_response(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
    if match is None:
        raise RuntimeError("response without Content-Length")
    length = int(match.group(1))
    while len(rest) < length:
        rest += sock.recv(65536)
    buffer[:] = rest[length:]
    return rest[:length]


def overhead(port: int, requests: int) -> dict[str, Any]:
    request = raw_request("/v1/query", QUERY)
    round_trips, cores = [], []
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(requests + 50):
            started = time.perf_counter()
            sock.sendall(request)
            body = read_response(sock, buffer)
            elapsed = (time.perf_counter() - started) * 1000
            if i >= 50:  # warm-up
                round_trips.append(elapsed)
                cores.append(json.loads(body)["timings_ms"]["total"])
    rt, core = np.asarray(round_trips), np.asarray(cores)
    added = rt - core
    return {
        "requests": requests,
        "round_trip_ms": {f"p{p}": float(np.percentile(rt, p)) for p in (50, 95, 99)},
        "core_ms": {f"p{p}": float(np.percentile(core, p)) for p in (50, 95, 99)},
        "http_overhead_ms": {f"p{p}": float(np.percentile(added, p)) for p in (50, 95, 99)},
    }


def wrk(
    port: int,
    path: str,
    body: dict[str, Any] | None,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    if shutil.which("wrk") is None:
        return None
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(
                f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
        for name, value in (headers or {}).items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    try:
        out = subprocess.run(
            [*args, "-s", script.name, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True
        )
    finally:
        os.unlink(script.name)
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)", out.stdout, re.MULTILINE))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    return {
        "path": path,
        "connections": connections,
        "latency": {f"p{k}": _ms(v) for k, v in latency.items()},
        "requests_per_s": float(rps.group(1)) if rps else None,
        "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)) else 0,
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--models", type=Path, help="an exported model cache to reuse (a data dir's models/)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ragserve-http-"))
    if args.models:
        (root / "models").symlink_to(args.models.resolve(), target_is_directory=True)
    port = free_port()
    server = start_server(root, port)
    try:
        created = httpx.post(
            f"http://127.0.0.1:{port}/v1/documents", json={"collection": "bench", "documents": DOCS}, timeout=120
        )
        created.raise_for_status()
        result: dict[str, Any] = {"sequential": overhead(port, args.requests)}
        result["wrk_live"] = wrk(port, "/health/live", None, args.wrk_seconds, 1)
        result["wrk_query"] = wrk(port, "/v1/query", QUERY, args.wrk_seconds, 1)
        result["wrk_query_c8"] = wrk(port, "/v1/query", QUERY, args.wrk_seconds, 8)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
