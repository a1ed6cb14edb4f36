"""Ingestion jobs run by the API process itself vs by Celery workers (`ragserve worker`), chunks/s.

The same SciFact documents are uploaded as JSON Lines files through `POST /v1/documents/upload`
in `--jobs` separate uploads (so several workers can work at once); the clock runs from the
first upload to the last job's success. In-process: one `ragserve serve` with
`RAGSERVE_JOB_WORKERS` = `--pool`. Celery: one `ragserve serve` queueing on a private
redis-server, and `--workers` `ragserve worker` processes of one process each.

    python bench/ingest_queue.py ../shared/data/scifact --limit 600 --jobs 6 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_overhead import free_port, start_server


def corpus(dataset: Path, limit: int) -> list[dict[str, Any]]:
    docs = []
    with (dataset / "corpus.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            docs.append({"id": row["_id"], "title": row.get("title") or None, "text": row["text"]})
            if len(docs) >= limit:
                break
    return docs


def uploads(docs: list[dict[str, Any]], jobs: int) -> list[bytes]:
    size = -(-len(docs) // jobs)
    return ["\n".join(json.dumps(d) for d in docs[i : i + size]).encode() for i in range(0, len(docs), size)]


def run(mode: str, dataset: Path, args: argparse.Namespace, models: Path | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"ragserve-ingest-{mode}-"))
    if models:
        (root / "models").symlink_to(models.resolve(), target_is_directory=True)
    port = free_port()
    env = {"RAGSERVE_UPLOAD_INLINE_BYTES": "0", "RAGSERVE_WARMUP": "false"}
    redis: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = []
    if mode == "celery":
        redis_port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        _wait_port(redis_port)
        env["RAGSERVE_QUEUE_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    else:
        env["RAGSERVE_JOB_WORKERS"] = str(args.pool)
    server = start_server(root, port, env=env)
    try:
        for _ in range(args.workers if mode == "celery" else 0):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ragserve.cli", "--data-dir", str(root), "worker", "--concurrency", "1"],
                    env={**os.environ, **env, "RAGSERVE_LOG_LEVEL": "warning"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        base = f"http://127.0.0.1:{port}"
        docs = corpus(dataset, args.limit)
        bodies = uploads(docs, args.jobs)
        if workers:
            time.sleep(args.worker_start_s)  # workers load the model before the clock starts
        started = time.perf_counter()
        ids = []
        for i, body in enumerate(bodies):
            r = httpx.post(
                f"{base}/v1/documents/upload",
                files=[("files", (f"part-{i}.jsonl", body, "application/jsonl"))],
                data={"collection": "bench"},
                timeout=60,
            )
            r.raise_for_status()
            ids.append(r.json()["job_id"])
        chunks = 0
        for job_id in ids:
            while True:
                job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
                if job["state"] in ("succeeded", "failed"):
                    break
                time.sleep(0.2)
            if job["state"] != "succeeded":
                raise SystemExit(f"job {job_id} failed: {job['error']}")
            chunks += int(job["result"]["chunks"])
        seconds = time.perf_counter() - started
        return {
            "mode": mode,
            "documents": len(docs),
            "jobs": len(ids),
            "workers": args.workers if mode == "celery" else args.pool,
            "chunks": chunks,
            "seconds": round(seconds, 2),
            "chunks_per_s": round(chunks / seconds, 1),
        }
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--limit", type=int, default=600, help="documents")
    parser.add_argument("--jobs", type=int, default=6, help="uploads (jobs) the documents are split into")
    parser.add_argument("--workers", type=int, default=2, help="`ragserve worker` processes (Celery)")
    parser.add_argument("--pool", type=int, default=1, help="jobs at once in the API process (in-process)")
    parser.add_argument("--worker-start-s", type=float, default=15.0)
    parser.add_argument("--models", type=Path, help="an exported model cache to reuse (a data dir's models/)")
    args = parser.parse_args()
    rows = [run(mode, args.dataset, args, args.models) for mode in ("in-process", "celery")]
    json.dump({"rows": rows}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
