"""A cached answer over HTTP: server-side latency and requests/s on one worker, next to uncached.

One `ragserve serve` process (one worker, uvicorn + uvloop + httptools; in-process cache, or
Redis under it with --redis-url). Server-side latency is what the server logs for each
request (`latency_ms` of its JSON access line: routing, validation, cache, serialisation);
throughput comes from `wrk` on loopback.

    python bench/cached_query.py [--redis-url redis://127.0.0.1:6379/15] [--auth] [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_overhead import DOCS, free_port, start_server, wrk

CACHED = {"query": "which port does the server listen on", "collection": "bench"}
UNCACHED = {**CACHED, "use_cache": False}


def server_latencies(log: Path, since: int) -> np.ndarray:
    """`latency_ms` of the /v1/query access lines written after byte `since` of the log."""
    values = []
    with log.open("rb") as f:
        f.seek(since)
        for line in f:
            if line.startswith(b"{"):
                record = json.loads(line)
                if record.get("event") == "request" and record.get("route") == "/v1/query":
                    values.append(record["latency_ms"])
    return np.asarray(values)


def sequential(
    port: int, body: dict[str, Any], n: int, log: Path, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    mark = log.stat().st_size
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
        seen = []
        for _ in range(n):
            r = client.post("/v1/query", json=body)
            seen.append(r.headers.get("x-cache"))
    time.sleep(0.5)  # the last access lines reach the log
    latencies = server_latencies(log, mark)
    return {
        "requests": n,
        "x_cache": {h: seen.count(h) for h in set(seen)},
        "server_ms": {f"p{p}": float(np.percentile(latencies, p)) for p in (50, 95, 99)} if len(latencies) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--redis-url")
    parser.add_argument("--models", type=Path, help="an exported model cache to reuse (a data dir's models/)")
    parser.add_argument(
        "--auth", action="store_true", help="API keys on, with a (never reached) per-key rate limit and a usage ledger"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ragserve-cached-"))
    if args.models:
        (root / "models").symlink_to(args.models.resolve(), target_is_directory=True)
    port, log = free_port(), root / "server.log"
    env = {"RAGSERVE_LOG_FORMAT": "json", "RAGSERVE_LOG_LEVEL": "info"}
    if args.redis_url:
        env["RAGSERVE_REDIS_URL"] = args.redis_url
    admin = secrets.token_urlsafe(32)
    if args.auth:
        env |= {
            "RAGSERVE_AUTH_MODE": "api_key",
            "RAGSERVE_ADMIN_API_KEY": admin,
            "RAGSERVE_RATE_LIMIT_KEY_RPM": "100000000",
        }
    server = start_server(root, port, log=log, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {admin}"}
        if args.auth:
            key = {"name": "bench", "scopes": ["query", "ingest"]}
            created = httpx.post(f"{base}/v1/keys", json=key, headers=headers)
            headers = {"Authorization": f"Bearer {created.raise_for_status().json()['key']}"}
        httpx.post(
            f"{base}/v1/documents", json={"collection": "bench", "documents": DOCS}, headers=headers, timeout=120
        ).raise_for_status()
        httpx.post(f"{base}/v1/query", json=CACHED, headers=headers, timeout=30).raise_for_status()  # fills the cache
        result: dict[str, Any] = {
            "cache": "redis (L2) + in-process L1" if args.redis_url else "in-process",
            "auth": "api_key, rate limit, usage ledger" if args.auth else "none",
            "cached": sequential(port, CACHED, args.requests, log, headers),
            "uncached": sequential(port, UNCACHED, max(args.requests // 4, 100), log, headers),
            "wrk_cached": wrk(port, "/v1/query", CACHED, args.wrk_seconds, args.connections, headers),
            "wrk_uncached": wrk(port, "/v1/query", UNCACHED, args.wrk_seconds, args.connections, headers),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
