"""Two real server processes sharing one data directory and one Redis: caches never serve stale.

Each replica has its own in-process L1 in front of the shared Redis L2. Instance A caches
an answer; the document it cites is changed through instance B; A's next identical query
must miss and cite the new version. Then Redis is killed while queries keep coming: none
may fail, and caching resumes when Redis is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import running_server

from ragserve.testing.redis_process import RedisProcess

pytestmark = pytest.mark.slow

QUESTION = "Which port does the server listen on?"
PORT_V1 = "The server listens on port 8000 by default. To change the port, set RAGSERVE_PORT."
PORT_V2 = "The server listens on port 9090 by default. To change the port, set RAGSERVE_PORT."


def ask(url: str, question: str = QUESTION) -> httpx.Response:
    r = httpx.post(f"{url}/v1/query", json={"query": question}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def put(url: str, text: str) -> None:
    r = httpx.post(f"{url}/v1/documents", json={"documents": [{"id": "port.md", "text": text}]}, timeout=60)
    assert r.status_code == 201, r.text


def env_for(redis: RedisProcess) -> dict[str, str]:
    # A short breaker reset so the test sees recovery within seconds.
    return {"RAGSERVE_REDIS_URL": redis.url, "RAGSERVE_BREAKER_RESET_S": "1", "RAGSERVE_CACHE_TIMEOUT_MS": "50"}


def test_a_write_through_one_replica_is_never_served_stale_by_the_other(
    make_data_dir: Callable[[], Path], tmp_path: Path, redis_process: RedisProcess
) -> None:
    data_dir = make_data_dir()
    env = env_for(redis_process)
    with (
        running_server(data_dir, tmp_path, env=env, name="a") as a,
        running_server(data_dir, tmp_path, env=env, name="b") as b,
    ):
        put(a.url, PORT_V1)
        first = ask(a.url)
        assert first.headers["x-cache"] == "miss" and "8000" in first.json()["answer"]
        assert ask(a.url).headers["x-cache"] == "hit-exact"  # from A's L1
        assert ask(b.url).headers["x-cache"] == "hit-exact"  # from Redis: B never computed it

        put(b.url, PORT_V2)  # updated through B
        after = ask(a.url)
        assert after.headers["x-cache"] == "miss"
        assert "9090" in after.json()["answer"] and "8000" not in after.json()["answer"]

        r = httpx.delete(f"{b.url}/v1/documents/port.md", timeout=30)  # deleted through B
        assert r.status_code == 200
        gone = ask(a.url)
        assert gone.headers["x-cache"] == "miss"
        assert gone.json()["citations"] == []


def test_redis_killed_mid_load_fails_no_query_and_caching_resumes(
    make_data_dir: Callable[[], Path], tmp_path: Path, redis_process: RedisProcess
) -> None:
    with running_server(make_data_dir(), tmp_path, env=env_for(redis_process)) as server:
        put(server.url, PORT_V1)
        ask(server.url)
        assert ask(server.url).headers["x-cache"] == "hit-exact"

        outcomes: list[tuple[int, str]] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        r = client.post(f"{server.url}/v1/query", json={"query": QUESTION})
                        outcomes.append((r.status_code, r.headers.get("x-cache", "")))
                    except httpx.HTTPError as exc:
                        outcomes.append((0, repr(exc)))

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        redis_process.kill()  # a crash, mid-load
        time.sleep(2.0)
        during = len(outcomes)
        redis_process.start()  # back, empty
        time.sleep(3.0)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

        assert outcomes, "no load was generated"
        assert all(code == 200 for code, _ in outcomes), [o for o in outcomes if o[0] != 200][:5]
        assert len(outcomes) > during  # it kept answering while Redis was down and after
        # Caching resumed without a restart: the same question is a hit again.
        deadline = time.monotonic() + 15
        states: list[Any] = []
        while time.monotonic() < deadline:
            state = ask(server.url).headers["x-cache"]
            states.append(state)
            if state == "hit-exact":
                break
            time.sleep(0.5)
        assert states[-1] == "hit-exact", states
        status = httpx.get(f"{server.url}/status", timeout=10).json()
        assert status["circuits"]["cache"]["state"] == "closed"
