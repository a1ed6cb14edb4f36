"""Three API replicas behind nginx, under steady load, one of them killed and restarted.

Real processes only: a private redis-server, PostgreSQL (a schema of the test's own, migrated
with `ragserve db upgrade`), three `ragserve serve --workers 2` (gunicorn) sharing one embedded
data directory, and nginx rendered from deploy/nginx/nginx.conf.template. What it holds them to:

- Availability: an open-loop load (requests sent on a fixed schedule whatever the answers, as
  independent clients do) of questions and searches through nginx; one replica is SIGKILLed
  with its workers mid-load and restarted on the same port. Every client request must succeed:
  nginx must route around the dead replica (a refused connection is retried elsewhere, since
  nothing was sent) and the restarted one must not swallow requests while it loads.
- Never stale across replicas: every few seconds a document is rewritten through nginx, and
  every live replica, asked directly at once, must answer from the new version. Each replica
  has its own in-process L1 cache over the shared Redis; tag eviction plus the live-chunk
  check before serving a hit are what must make that hold.
- Rate limits are global: a burst from one key spread over the replicas by nginx is admitted
  up to the limit and never past it, since every replica counts in the same Redis window.

The figures (latency per phase, failures, stale answers, admitted vs limit) are printed (`-s`)
and written to `cluster-figures.json` in the test's tmp dir. `make test-cluster` runs it; the
normal `make test` leaves it out (`-m "not cluster"`): it takes a few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from servers import Server, free_port, start_server, wait_ready

from ragserve.testing.redis_process import RedisProcess
from relational_backends import postgres_schema
from secrets_registry import register

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "deploy" / "nginx" / "render.py"

REPLICAS = 3
WORKERS = 2
RATE_PER_S = 20.0  # open loop: request i is sent at t0 + i / RATE_PER_S
LOAD_S = 60.0
KILL_AT_S = 20.0
RESTART_AT_S = 35.0
POLICY_EVERY_S = 5.0
CLIENT_TIMEOUT_S = 10.0
# Requests nginx had already sent to the victim when it was SIGKILLed (in flight, or written to a kept-alive
# connection during the few milliseconds the dying processes still held their sockets) end in a connection
# error; the template resends those for the read-only POSTs this load sends (/v1/query, /v1/search), so none
# may be lost. (Before that rule, 0-1 of 1,200 were lost per run, each within ~10 ms of the kill.)
MAX_LOST_IN_CRASH = 0
CRASH_WINDOW_S = 1.0
# Above what the load sends from its one key (RATE_PER_S * 60 = 1200 a minute), so the load is never
# limited; the burst key then meets the same per-key limit.
KEY_RPM = 1500
BURST = KEY_RPM * 3 // 2
BURST_CONCURRENCY = 48
FIRST_POLICY = 1001
POLICY_DOC = "policy.md"
POLICY_QUESTION = "What is the current policy number?"
POLICY_NUMBER = re.compile(r"policy number is (\d+)")

TOPICS = {
    "otters.md": (
        "Sea otters hold hands while sleeping so that they do not drift apart.",
        "Why do sea otters hold hands?",
    ),
    "volcano.md": ("Volcanoes erupt when magma rises through cracks in the crust.", "What makes a volcano erupt?"),
    "bread.md": ("Sourdough bread rises because wild yeast ferments the dough.", "What makes sourdough bread rise?"),
    "tides.md": ("Ocean tides are caused by the gravitational pull of the moon.", "What causes ocean tides?"),
    "bees.md": (
        "Honey bees communicate the location of flowers with a waggle dance.",
        "How do bees share where flowers are?",
    ),
    "chess.md": ("In chess, castling moves the king two squares toward a rook.", "How does castling work in chess?"),
    "rust.md": ("Iron rusts when it reacts with oxygen and water to form iron oxide.", "Why does iron rust?"),
    "rainbow.md": ("A rainbow appears when sunlight is refracted inside raindrops.", "How does a rainbow form?"),
    "coffee.md": ("Espresso is brewed by forcing hot water through finely ground coffee.", "How is espresso brewed?"),
    "glacier.md": (
        "Glaciers carve U-shaped valleys as they slowly flow downhill.",
        "What shape of valley do glaciers carve?",
    ),
    "owls.md": ("Owls can rotate their heads about 270 degrees to look around.", "How far can an owl turn its head?"),
    "tea.md": ("Green tea leaves are steamed or pan-fired to stop oxidation.", "How is green tea kept from oxidising?"),
    "bridges.md": (
        "Suspension bridges hang their deck from cables strung between towers.",
        "How do suspension bridges hold their deck?",
    ),
    "compost.md": ("Compost turns kitchen scraps into soil through microbial decay.", "How does compost make soil?"),
    "lightning.md": ("Lightning is a discharge of static electricity built up in storm clouds.", "What is lightning?"),
    "cheese.md": ("Cheese is made by curdling milk with rennet and pressing the curds.", "How is cheese made?"),
    "penguins.md": (
        "Emperor penguins huddle together to survive the Antarctic winter.",
        "How do emperor penguins survive winter?",
    ),
    "sailing.md": ("Sailboats can tack upwind by zigzagging across the wind direction.", "How do sailboats go upwind?"),
    "maple.md": ("Maple syrup is made by boiling down the sap of sugar maple trees.", "How is maple syrup made?"),
    "moss.md": ("Moss grows best in damp, shaded places and has no true roots.", "Where does moss grow best?"),
    "comets.md": ("Comets grow glowing tails when sunlight heats their icy nuclei.", "Why do comets have tails?"),
    "bicycles.md": (
        "Bicycle gears trade pedalling speed for force when climbing hills.",
        "What do bicycle gears do on hills?",
    ),
    "whales.md": ("Blue whales are the largest animals known to have ever lived.", "What is the largest animal ever?"),
    "pottery.md": ("Clay pots are fired in a kiln to harden them into ceramic.", "How are clay pots hardened?"),
    "fireflies.md": ("Fireflies glow through a chemical reaction called bioluminescence.", "Why do fireflies glow?"),
    "deserts.md": ("Cacti store water in their thick stems to survive in deserts.", "How do cacti survive in deserts?"),
    "origami.md": ("Origami is the art of folding a single sheet of paper into shapes.", "What is origami?"),
    "telescopes.md": (
        "Reflecting telescopes gather light with a curved primary mirror.",
        "How do reflecting telescopes gather light?",
    ),
    "kites.md": ("Kites fly because wind flowing over them creates lift.", "Why do kites fly?"),
}


def policy_text(number: int) -> str:
    return f"The current policy number is {number}. Staff quote the current policy number on every request form."


# ------------------------------------------------------------------ processes


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_nginx_render", RENDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kill_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process group `process` leads (started with start_new_session): gunicorn and its workers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


@dataclass
class Replica:
    port: int
    server: Server
    up: bool = False  # ready, and not killed since


class Cluster:
    """The replicas and nginx of one test; `close()` stops what is still running, whatever happened."""

    def __init__(self, data_dir: Path, logs: Path, env: dict[str, str]) -> None:
        self.data_dir, self.logs, self.env = data_dir, logs, env
        self.replicas: list[Replica] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.nginx_dir = logs / "nginx"
        self.nginx_url = ""
        self._lock = threading.Lock()
        self.starts = 0

    def _start(self, index: int, port: int | None = None) -> Server:
        self.starts += 1
        name = f"api{index + 1}" if port is None else f"api{index + 1}-restart{self.starts}"
        return start_server(
            self.data_dir, self.logs, "--workers", str(WORKERS), env=self.env, name=name, port=port, new_session=True
        )

    def start_replicas(self) -> None:
        servers = [self._start(i) for i in range(REPLICAS)]
        self.replicas = [Replica(int(s.url.rsplit(":", 1)[1]), s) for s in servers]
        for replica in self.replicas:
            wait_ready(replica.server)
            replica.up = True

    def start_nginx(self, render: ModuleType) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            pytest.skip("nginx is not installed (`make test` installs it with apt-get)")
        (self.nginx_dir / "temp").mkdir(parents=True)
        listen = free_port()
        conf = self.nginx_dir / "nginx.conf"
        conf.write_text(
            render.render_nginx_conf(
                [f"127.0.0.1:{r.port}" for r in self.replicas], listen, runtime_dir=self.nginx_dir
            ),
            encoding="utf-8",
        )
        self.nginx = subprocess.Popen(
            [nginx, "-e", "stderr", "-p", str(self.nginx_dir), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=(self.nginx_dir / "stderr.log").open("wb"),
            start_new_session=True,
        )
        self.nginx_url = f"http://127.0.0.1:{listen}"
        deadline = time.monotonic() + 15
        while True:
            assert self.nginx.poll() is None, (self.nginx_dir / "stderr.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.nginx_url}/nginx-health", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)

    def kill(self, index: int) -> None:
        """SIGKILL a replica's whole process group: a crash, no draining, no goodbye."""
        replica = self.replicas[index]
        with self._lock:
            replica.up = False
        _kill_group(replica.server.process, signal.SIGKILL)
        replica.server.process.wait(timeout=30)

    def restart(self, index: int) -> Server:
        """Start the replica again on its port; `mark_up` once it is ready."""
        replica = self.replicas[index]
        replica.server = self._start(index, port=replica.port)
        return replica.server

    def mark_up(self, index: int) -> None:
        with self._lock:
            self.replicas[index].up = True

    def live_urls(self) -> list[tuple[int, str]]:
        with self._lock:
            return [(i, r.server.url) for i, r in enumerate(self.replicas) if r.up]

    def access_log(self) -> list[dict[str, Any]]:
        path = self.nginx_dir / "access.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _kill_group(self.nginx, signal.SIGKILL)
                self.nginx.wait(timeout=15)
        for replica in self.replicas:
            process = replica.server.process
            if process.poll() is None:
                _kill_group(process, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=60)
            _kill_group(process, signal.SIGKILL)  # a worker left behind by its master, if any
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)


@pytest.fixture
def cluster(make_data_dir: Callable[[], Path], tmp_path: Path) -> Iterator[Cluster]:
    data_dir = make_data_dir()
    admin_key = register(secrets.token_urlsafe(30)[:40])
    with RedisProcess() as redis, postgres_schema() as database_url:
        env = {
            "RAGSERVE_REDIS_URL": redis.url,
            "RAGSERVE_DATABASE_URL": database_url,
            "RAGSERVE_AUTH_MODE": "api_key",
            "RAGSERVE_ADMIN_API_KEY": admin_key,
            "RAGSERVE_API_KEY_PEPPER": register("pep-" + secrets.token_urlsafe(32)),
            "RAGSERVE_RATE_LIMIT_KEY_RPM": str(KEY_RPM),
            "RAGSERVE_WARMUP": "true",
            # A check Redis does not answer in time admits uncounted (fail open, the default). With six workers
            # on a small test machine, an event loop busy embedding overruns the default 20 ms now and then, and
            # the burst below would leak a few requests past the limit; the test measures the shared counting,
            # so it allows 250 ms and asserts that no check failed open during the burst.
            "RAGSERVE_RATE_LIMIT_TIMEOUT_MS": "250",
        }
        upgrade = subprocess.run(
            [sys.executable, "-m", "ragserve.cli", "--data-dir", str(data_dir), "db", "upgrade"],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        cluster = Cluster(data_dir, tmp_path, env)
        try:
            cluster.start_replicas()
            cluster.start_nginx(_render_module())
            yield cluster
        finally:
            cluster.close()


# ------------------------------------------------------------------ load


@dataclass
class Outcome:
    index: int
    path: str
    started_s: float  # since t0
    latency_s: float
    status: int | None  # None: no response (timeout, connection error)
    error: str = ""
    phase: str = ""


@dataclass
class PolicyCheck:
    version: int
    at_s: float
    write_status: int | None
    answers: dict[str, str] = field(default_factory=dict)  # replica -> "fresh", "stale: [...]", "missing", error
    x_cache: dict[str, str] = field(default_factory=dict)  # replica -> its X-Cache (miss, hit-exact, ...)


@dataclass
class Timeline:
    t0: float = 0.0
    killed_s: float | None = None  # SIGKILL sent
    dead_s: float | None = None  # the whole process group gone
    restarted_s: float | None = None
    ready_s: float | None = None
    restart_error: str = ""


def headers(key: str, request_id: str | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {key}"}
    if request_id:
        h["X-Request-ID"] = request_id
    return h


def load_body(i: int) -> tuple[str, dict[str, Any]]:
    """Alternate questions and searches over the corpus's topics."""
    questions = [q for _, q in TOPICS.values()]
    question = questions[(i // 2) % len(questions)]
    if i % 2:
        return "/v1/search", {"query": question, "top_k": 5}
    return "/v1/query", {"query": question}


async def one_request(client: httpx.AsyncClient, key: str, i: int, t0: float) -> Outcome:
    path, body = load_body(i)
    started = time.monotonic()
    try:
        r = await client.post(path, json=body, headers=headers(key, f"load-{i}"))
        status: int | None = r.status_code
        error = "" if r.is_success else r.text[:300]
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"
    return Outcome(i, path, started - t0, time.monotonic() - started, status, error)


async def open_loop(client: httpx.AsyncClient, key: str, t0: float) -> list[Outcome]:
    tasks = []
    for i in range(int(RATE_PER_S * LOAD_S)):
        delay = t0 + i / RATE_PER_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_request(client, key, i, t0)))
    return await asyncio.gather(*tasks)


async def chaos(cluster: Cluster, timeline: Timeline, victim: int) -> None:
    """Kill the victim at KILL_AT_S, start it again at RESTART_AT_S, note when it is ready."""
    await asyncio.sleep(max(0.0, timeline.t0 + KILL_AT_S - time.monotonic()))
    timeline.killed_s = time.monotonic() - timeline.t0
    await asyncio.to_thread(cluster.kill, victim)
    timeline.dead_s = time.monotonic() - timeline.t0
    await asyncio.sleep(max(0.0, timeline.t0 + RESTART_AT_S - time.monotonic()))
    server = cluster.restart(victim)
    timeline.restarted_s = time.monotonic() - timeline.t0
    try:
        await asyncio.to_thread(wait_ready, server)
    except BaseException as exc:  # wait_ready fails the test with pytest.fail (an OutcomeException)
        timeline.restart_error = str(exc)[-2000:]
        return
    timeline.ready_s = time.monotonic() - timeline.t0
    cluster.mark_up(victim)


def policy_verdict(body: dict[str, Any], version: int) -> str:
    """'fresh' when the answer (or, for "I don't know", the retrieved policy text) shows `version` only."""
    if body.get("answered"):
        seen = set(POLICY_NUMBER.findall(body["answer"]))
        for citation in body.get("citations", []):
            if citation["document_id"] == POLICY_DOC:
                seen |= set(POLICY_NUMBER.findall(citation["snippet"]))
    else:
        seen = set()
    for source in body.get("sources", []):
        if source["document_id"] == POLICY_DOC:
            seen |= set(POLICY_NUMBER.findall(source["text"]))
    old = sorted(int(n) for n in seen if int(n) != version)
    if old:
        return f"stale: saw {old} (x-cache answer={body.get('cached')!r})"
    return "fresh" if str(version) in seen else f"missing: {body.get('answer', '')[:120]!r}"


async def ask_replica(direct: httpx.AsyncClient, key: str, index: int, url: str, check: PolicyCheck) -> None:
    """Ask one replica, bypassing nginx, and note whether its answer shows `check.version` only."""
    who = f"api{index + 1}"
    try:
        a = await direct.post(f"{url}/v1/query", json={"query": POLICY_QUESTION}, headers=headers(key))
    except httpx.HTTPError as exc:
        check.answers[who] = f"error: {type(exc).__name__}"
        return
    if a.status_code != 200:
        check.answers[who] = f"error: {a.status_code} {a.text[:200]}"
        return
    check.x_cache[who] = a.headers.get("x-cache", "")
    check.answers[who] = policy_verdict(a.json(), check.version)


async def policy_updates(
    cluster: Cluster, client: httpx.AsyncClient, key: str, timeline: Timeline, checks: list[PolicyCheck]
) -> None:
    """Every POLICY_EVERY_S: rewrite policy.md through nginx, then at once ask every live replica directly."""
    version = FIRST_POLICY
    n = 1
    # Idle connections are dropped after 2 s: the servers close theirs after 5 s (gunicorn/uvicorn keep-alive),
    # which is exactly this loop's period, and a request sent on a connection being closed fails (ReadError).
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits) as direct:
        while (at := n * POLICY_EVERY_S - 2.5) < LOAD_S:
            await asyncio.sleep(max(0.0, timeline.t0 + at - time.monotonic()))
            n += 1
            version += 1
            check = PolicyCheck(version, time.monotonic() - timeline.t0, None)
            checks.append(check)
            body = {"documents": [{"id": POLICY_DOC, "text": policy_text(version)}]}
            try:
                r = await client.post("/v1/documents", json=body, headers=headers(key, f"policy-{version}"))
                check.write_status = r.status_code
            except httpx.HTTPError as exc:
                check.answers["write"] = f"{type(exc).__name__}: {exc}"
                continue
            if r.status_code != 201:
                check.answers["write"] = r.text[:300]
                continue
            await asyncio.gather(*(ask_replica(direct, key, i, url, check) for i, url in cluster.live_urls()))


async def burst(client: httpx.AsyncClient, key: str) -> tuple[Counter[int | str], float]:
    """BURST searches from one key as fast as BURST_CONCURRENCY clients can send them through nginx."""
    gate = asyncio.Semaphore(BURST_CONCURRENCY)

    async def one(i: int) -> int | str:
        async with gate:
            try:
                r = await client.post("/v1/search", json={"query": "Why do kites fly?"}, headers=headers(key))
                return r.status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__

    started = time.monotonic()
    statuses = await asyncio.gather(*(one(i) for i in range(BURST)))
    return Counter(statuses), time.monotonic() - started


def ratelimit_metrics(urls: list[str]) -> dict[str, float]:
    """Summed over the replicas (each one's /metrics covers its workers): rate-limit decisions and failed checks.

    `rag_ratelimit_errors_total{policy="open"}` counts checks Redis did not answer within
    RAGSERVE_RATE_LIMIT_TIMEOUT_MS, each one admitted without being counted: how a global limit leaks.
    """
    totals: dict[str, float] = {}
    for url in urls:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        for line in text.splitlines():
            if line.startswith(("rag_ratelimit_errors_total", "rag_ratelimit_decisions_total")):
                name, value = line.rsplit(" ", 1)
                totals[name] = totals.get(name, 0.0) + float(value)
    return dict(sorted(totals.items()))


# ------------------------------------------------------------------ figures


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def phase_of(outcome: Outcome, timeline: Timeline) -> str:
    if timeline.killed_s is None or outcome.started_s < timeline.killed_s:
        return "before"
    if timeline.ready_s is None or outcome.started_s < timeline.ready_s:
        return "during"
    return "after"


def figures_table(figures: dict[str, Any]) -> str:
    lines = [
        "",
        "=" * 78,
        f"cluster: {REPLICAS} replicas x {WORKERS} workers behind nginx; "
        f"open loop {RATE_PER_S:g} req/s for {LOAD_S:g} s",
        "timeline (s): SIGKILL {killed_s}, dead {dead_s}, restarted {restarted_s}, ready again {ready_s}".format(
            **figures["timeline"]
        ),
        f"{'phase':<8}{'requests':>10}{'failed':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for phase, row in figures["phases"].items():

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.0f}"

        lines.append(
            f"{phase:<8}{row['requests']:>10}{row['failed']:>8}"
            f"{ms(row['p50_s']):>10}{ms(row['p95_s']):>10}{ms(row['p99_s']):>10}{ms(row['max_s']):>10}"
        )
    lines += [
        f"failures by status: {figures['failures_by_status']}; lost in the crash (sent to the victim as it died, "
        f"not resent by nginx: POST): {figures['lost_in_crash']}; other failures: {figures['other_failures']}",
        f"victim served {figures['nginx']['victim_served_after_ready']} load requests after its restart",
        f"nginx: {figures['nginx']['retried_on_another_replica']} requests retried on another replica, "
        f"upstream statuses {figures['nginx']['upstream_statuses']}",
        f"policy checks: {figures['policy']['checks']} answers from replicas, {figures['policy']['stale']} stale, "
        f"{figures['policy']['missing']} missing, {figures['policy']['errors']} errors, "
        f"{figures['policy']['write_failures']} failed writes; X-Cache {figures['policy']['x_cache']}",
        f"rate limit: {figures['rate_limit']['sent']} sent in {figures['rate_limit']['elapsed_s']:.1f} s, "
        f"{figures['rate_limit']['admitted']} admitted, limit {figures['rate_limit']['limit']}, "
        f"statuses {figures['rate_limit']['statuses']}",
        f"rate limiter metrics during the burst (all replicas): {figures['rate_limit']['metrics']}",
        "=" * 78,
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ the test


def test_replicas_behind_nginx_survive_a_crash_never_serve_stale_and_share_rate_limits(
    cluster: Cluster, tmp_path: Path
) -> None:
    admin = cluster.env["RAGSERVE_ADMIN_API_KEY"]
    base = cluster.nginx_url

    def create_key(name: str) -> str:
        body = {"name": name, "scopes": ["query", "ingest"]}
        r = httpx.post(f"{base}/v1/keys", json=body, headers=headers(admin), timeout=30)
        assert r.status_code == 201, r.text
        return register(str(r.json()["key"]))

    load_key, checker_key, burst_key = create_key("load"), create_key("checker"), create_key("burst")

    documents = [{"id": doc_id, "text": text} for doc_id, (text, _) in TOPICS.items()]
    documents.append({"id": POLICY_DOC, "text": policy_text(FIRST_POLICY)})
    r = httpx.post(f"{base}/v1/documents", json={"documents": documents}, headers=headers(checker_key), timeout=120)
    assert r.status_code == 201, r.text
    assert len(r.json()["results"]) == len(TOPICS) + 1

    timeline = Timeline()
    checks: list[PolicyCheck] = []
    victim = 1  # the second replica: neither first nor last in nginx's list

    async def scenario() -> tuple[list[Outcome], Counter[int | str], float, dict[str, float]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
            timeline.t0 = time.monotonic() + 0.5
            chaos_task = asyncio.create_task(chaos(cluster, timeline, victim))
            policy_task = asyncio.create_task(policy_updates(cluster, client, checker_key, timeline, checks))
            outcomes = await open_loop(client, load_key, timeline.t0)
            await policy_task
            await chaos_task
            urls = [r.server.url for r in cluster.replicas]
            before = await asyncio.to_thread(ratelimit_metrics, urls)
            statuses, elapsed = await burst(client, burst_key)
            after = await asyncio.to_thread(ratelimit_metrics, urls)
            return outcomes, statuses, elapsed, {k: v - before.get(k, 0.0) for k, v in after.items()}

    outcomes, burst_statuses, burst_s, limiter = asyncio.run(scenario())
    failed_open = limiter.get('rag_ratelimit_errors_total{policy="open"}', 0.0)

    # ---------------------------------------------------------------- figures
    for o in outcomes:
        o.phase = phase_of(o, timeline)
    failed = [o for o in outcomes if o.status is None or not 200 <= o.status < 300]
    phases: dict[str, dict[str, Any]] = {}
    for phase in ("before", "during", "after"):
        rows = [o for o in outcomes if o.phase == phase]
        latencies = [o.latency_s for o in rows if o.status is not None and 200 <= o.status < 300]
        phases[phase] = {
            "requests": len(rows),
            "failed": sum(1 for o in rows if o in failed),
            "p50_s": percentile(latencies, 50),
            "p95_s": percentile(latencies, 95),
            "p99_s": percentile(latencies, 99),
            "max_s": max(latencies) if latencies else None,
        }
    access = cluster.access_log()
    by_request = {line["request_id"]: line for line in access}
    victim_upstream = f"127.0.0.1:{cluster.replicas[victim].port}"

    def lost_in_crash(o: Outcome) -> bool:
        """nginx answered 503 after its one try, at the victim, failed as the victim was being killed."""
        line = by_request.get(f"load-{o.index}") or {}
        return (
            o.status == 503
            and line.get("upstream") == victim_upstream
            and line.get("upstream_status") == "502"
            and timeline.killed_s is not None
            and abs(o.started_s - timeline.killed_s) <= CRASH_WINDOW_S
        )

    lost = [o for o in failed if lost_in_crash(o)]
    other = [o for o in failed if not lost_in_crash(o)]
    served_after = [
        line
        for line in access
        if line["request_id"].startswith("load-")
        and timeline.ready_s is not None
        and int(line["request_id"][5:]) / RATE_PER_S > timeline.ready_s
        and line["upstream"].split(", ")[-1] == victim_upstream
        and line["status"] == 200
    ]
    retried = [line for line in access if "," in line["upstream"]]
    answers = [verdict for c in checks for who, verdict in c.answers.items() if who != "write"]
    admitted = burst_statuses.get(200, 0)
    figures: dict[str, Any] = {
        "timeline": {k: None if v is None else round(v, 2) for k, v in asdict(timeline).items() if k.endswith("_s")},
        "phases": phases,
        "failures_by_status": dict(Counter(str(o.status) for o in failed)),
        "lost_in_crash": len(lost),
        "other_failures": len(other),
        "failures": [
            {**asdict(o), "nginx": by_request.get(f"load-{o.index}")} for o in sorted(failed, key=lambda o: o.index)
        ][:50],
        "nginx": {
            "retried_on_another_replica": len(retried),
            "victim_served_after_ready": len(served_after),
            "upstream_statuses": dict(Counter(line["upstream_status"] for line in access)),
        },
        "policy": {
            "checks": len(answers),
            "stale": sum(1 for a in answers if a.startswith("stale")),
            "missing": sum(1 for a in answers if a.startswith("missing")),
            "errors": sum(1 for a in answers if a.startswith("error")),
            "write_failures": sum(1 for c in checks if c.write_status != 201),
            "x_cache": dict(Counter(x for c in checks for x in c.x_cache.values())),
            "by_version": [asdict(c) for c in checks],
        },
        "rate_limit": {
            "limit": KEY_RPM,
            "sent": BURST,
            "admitted": admitted,
            "statuses": {str(k): v for k, v in burst_statuses.items()},
            "elapsed_s": burst_s,
            "metrics": limiter,
        },
    }
    report = tmp_path / "cluster-figures.json"
    report.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    print(figures_table(figures))
    print(f"figures: {report}")

    # ---------------------------------------------------------------- verdicts
    assert not timeline.restart_error, f"the restarted replica never became ready:\n{timeline.restart_error}"
    assert timeline.killed_s is not None and timeline.ready_s is not None
    assert phases["during"]["requests"] > 0 and phases["after"]["requests"] > 0
    failures = json.dumps(figures["failures"][:10], indent=1)
    assert not other, f"{len(other)} client requests failed (besides {len(lost)} lost in the crash): {failures}"
    assert len(lost) <= MAX_LOST_IN_CRASH, f"{len(lost)} requests lost in the crash: {failures}"
    assert served_after, "nginx never sent the restarted replica any load"

    assert checks and figures["policy"]["write_failures"] == 0, figures["policy"]["by_version"]
    assert figures["policy"]["stale"] == 0, figures["policy"]["by_version"]
    assert all(a == "fresh" for a in answers), figures["policy"]["by_version"]
    # Every replica was asked: the victim before its kill and again after its restart.
    asked = {who for c in checks for who in c.answers}
    assert asked >= {f"api{i + 1}" for i in range(REPLICAS)}, asked

    assert set(burst_statuses) <= {200, 429}, burst_statuses
    assert burst_s < 55, f"the burst took {burst_s:.1f} s: part of it left the 60 s window"
    assert failed_open == 0, f"{failed_open:g} rate-limit checks failed open during the burst: {limiter}"
    assert admitted <= KEY_RPM, f"{admitted} admitted over a limit of {KEY_RPM}"
    assert admitted >= KEY_RPM * 0.95, f"only {admitted} admitted under a limit of {KEY_RPM}"
