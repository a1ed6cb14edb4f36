"""Prometheus metrics, correct under one process or several gunicorn workers.

`get_metrics()` creates the process-wide metric families on first use. Under several
workers prometheus_client's multiprocess mode is used: each worker writes its samples
to files in `PROMETHEUS_MULTIPROC_DIR`, and `exposition()` merges every worker's files,
so a scrape answered by any worker reports the whole server.

Document and chunk counts are not per-process state: they are read from the store at
scrape time (`exposition(totals=await rag.totals())`), so every worker reports the same.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ragserve.types import CollectionStats

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# 1 ms to 30 s: a cache hit at the low end, a slow LLM answer near the request deadline.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# 50 µs to 1 s: an in-process hit at the low end, a Redis round trip near the cache timeout.
CACHE_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# 100 ms to 2 h: a small upload at the low end, a large corpus at the high end.
JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

# Bounded label values of the cache families; caches refuse other layer names when they are built.
CACHE_LAYERS = frozenset({"l1", "l2", "semantic", "embedding"})
CACHE_RESULTS = frozenset({"hit", "miss", "error", "stale"})
EVICTION_REASONS = frozenset({"lru", "ttl", "tag", "size"})

# The stage label stays bounded: timings under any other name are not recorded.
STAGES = frozenset(
    {
        "guard",
        "cache",
        "semantic_cache",
        "embed",
        "retrieve",
        "dense",
        "keyword",
        "fuse",
        "rerank",
        "context",
        "generate",
    }
)


@dataclass(frozen=True, slots=True)
class Metrics:
    requests: Counter
    request_latency: Histogram
    stage_duration: Histogram
    errors: Counter
    ingest_chunks: Counter
    llm_calls: Counter
    llm_tokens: Counter
    llm_latency: Histogram
    llm_ttft: Histogram
    cost: Counter
    circuit_state: Gauge
    stage_skipped: Counter
    degraded: Counter
    cache_requests: Counter
    cache_latency: Histogram
    cache_evictions: Counter
    guard_flags: Counter
    ratelimit_decisions: Counter
    ratelimit_errors: Counter
    auth_failures: Counter
    ingest_job_seconds: Histogram

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.request_latency.labels(endpoint=endpoint).observe(seconds)

    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        """Record per-stage timings as returned by the core (milliseconds); "total" and unknown names are skipped."""
        for stage, ms in timings_ms.items():
            if stage in STAGES:
                self.stage_duration.labels(stage=stage).observe(ms / 1000)


_metrics: Metrics | None = None
_lock = threading.Lock()


def get_metrics() -> Metrics:
    """The process-wide metric families, created (and registered in the default registry) on first call."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _create()
    return _metrics


def _create() -> Metrics:
    if os.environ.get(MULTIPROC_ENV) and not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client picks its value storage when first imported. If that happened in
        # the gunicorn master before the directory was set, forked workers would keep
        # per-process values that no scrape merges; pick again now that the directory is known.
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    # `*_created` series double the series count and multiprocess mode cannot report them;
    # leave them out so one worker and several expose the same families.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return Metrics(
        requests=Counter("rag_requests", "HTTP requests by route template and status code.", ["endpoint", "status"]),
        request_latency=Histogram(
            "rag_request_latency_seconds",
            "HTTP request latency to the end of the response body, by route template.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
        ),
        stage_duration=Histogram(
            "rag_stage_duration_seconds", "Time spent per query stage.", ["stage"], buckets=LATENCY_BUCKETS
        ),
        errors=Counter("rag_errors", "Error responses by error type.", ["type"]),
        ingest_chunks=Counter("rag_ingest_chunks", "Chunks written by ingestion."),
        llm_calls=Counter("rag_llm_calls", "Calls to model providers by outcome.", ["provider", "outcome"]),
        llm_tokens=Counter("rag_llm_tokens", "Tokens sent to and received from providers.", ["provider", "kind"]),
        llm_latency=Histogram(
            "rag_llm_latency_seconds",
            "Provider call latency, to the whole answer.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
        ),
        llm_ttft=Histogram(
            "rag_llm_time_to_first_token_seconds",
            "Time to a streamed answer's first token.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
        ),
        cost=Counter("rag_cost_dollars", "Provider cost from the configured price table.", ["provider"]),
        # 0 closed, 1 open, 2 half-open; under several workers the highest of the live workers.
        circuit_state=Gauge(
            "rag_circuit_state", "Circuit breaker state per dependency.", ["dependency"], multiprocess_mode="livemax"
        ),
        stage_skipped=Counter("rag_stage_skipped", "Stages skipped or cut short.", ["stage", "reason"]),
        degraded=Counter("rag_degraded", "Answers served in a degraded mode.", ["mode"]),
        cache_requests=Counter(
            "rag_cache_requests", "Cache lookups by layer and result, one per key.", ["layer", "result"]
        ),
        cache_latency=Histogram(
            "rag_cache_latency_seconds", "Cache lookup latency by layer.", ["layer"], buckets=CACHE_LATENCY_BUCKETS
        ),
        cache_evictions=Counter(
            "rag_cache_evictions", "Entries evicted from in-process caches, by reason.", ["reason"]
        ),
        # where: query (a user's question) or context (a retrieved chunk); action: flag, sanitise, reject, fence, drop.
        guard_flags=Counter("rag_guard_flags", "Prompt-injection guard findings.", ["where", "action"]),
        # rule: requests or tokens; result: allowed or limited. No tenant or key in labels.
        ratelimit_decisions=Counter("rag_ratelimit_decisions", "Rate limit decisions.", ["rule", "result"]),
        # The limiter's store could not be asked; policy: open (admitted) or closed (refused).
        ratelimit_errors=Counter("rag_ratelimit_errors", "Rate limit checks that failed.", ["policy"]),
        auth_failures=Counter("rag_auth_failures", "Refused credentials by reason.", ["reason"]),
        # stage: wait (queued until claimed) or run (claimed until finished), observed where the job ran.
        ingest_job_seconds=Histogram(
            "rag_ingest_job_seconds", "Ingestion job durations by stage.", ["stage"], buckets=JOB_BUCKETS
        ),
    )


def prepare_multiprocess_dir() -> Path | None:
    """Point `PROMETHEUS_MULTIPROC_DIR` at an empty directory; returns it when we created it (to remove at exit)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        # Files left by an earlier run would be counted again as if their workers were alive.
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    created = Path(tempfile.mkdtemp(prefix="ragserve-metrics-"))
    os.environ[MULTIPROC_ENV] = str(created)
    return created


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition(
    totals: CollectionStats | None, accept: str = "", jobs: tuple[int, int] | None = None
) -> tuple[bytes, str]:
    """The scrape body and its content type (negotiated from `accept`).

    `totals` fills the `rag_documents` and `rag_chunks` gauges; None (store unreachable) leaves them out.
    `jobs` (queued, running) fills `rag_ingest_queue_depth` and `rag_ingest_jobs_running`, read from
    the shared job store, so every replica reports the same.
    Reads every worker's files in multiprocess mode: call it off the event loop.
    """
    get_metrics()  # so the families appear before their first sample
    if multiprocess_enabled():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        source: Collector = registry
    else:
        source = REGISTRY
    encode, content_type = choose_encoder(accept)
    return encode(_Scrape(source, totals, jobs)), content_type


class _Scrape(Collector):
    """One scrape: the registry's families plus the store totals read for it."""

    def __init__(self, source: Collector, totals: CollectionStats | None, jobs: tuple[int, int] | None) -> None:
        self.source = source
        self.totals = totals
        self.jobs = jobs

    def collect(self) -> Iterable[Metric]:
        yield from self.source.collect()
        yield from self._totals()
        if self.jobs is not None:
            queued, running = self.jobs
            yield GaugeMetricFamily("rag_ingest_queue_depth", "Ingestion jobs waiting for a worker.", value=queued)
            yield GaugeMetricFamily("rag_ingest_jobs_running", "Ingestion jobs being run now.", value=running)

    def _totals(self) -> Iterator[Metric]:
        if self.totals is None:
            return
        yield GaugeMetricFamily(
            "rag_documents", "Documents stored, across all tenants and collections.", value=self.totals.documents
        )
        yield GaugeMetricFamily(
            "rag_chunks", "Chunks stored, across all tenants and collections.", value=self.totals.chunks
        )
