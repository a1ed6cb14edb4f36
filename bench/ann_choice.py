"""Why hnswlib: build time, latency and recall@10 of hnswlib and usearch on the same vectors.

python bench/ann_choice.py --n 100000      (usearch is an optional extra: pip install usearch)
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dim = 384
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    data = centers[rng.integers(0, 1000, args.n)] + 0.25 * rng.standard_normal((args.n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[rng.integers(0, args.n, args.queries)] + 0.1 * rng.standard_normal((args.queries, dim)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]

    def report(name: str, build_s: float, search: object) -> None:
        latencies, found = [], []
        for q in queries:
            t = time.perf_counter()
            labels = search(q)  # type: ignore[operator]
            latencies.append(time.perf_counter() - t)
            found.append(labels)
        recall = np.mean([len(set(map(int, f)) & set(map(int, g))) / 10 for f, g in zip(found, truth, strict=True)])
        ms = np.asarray(latencies) * 1000
        print(
            f"{name:<22} build {build_s:6.1f}s  p50 {np.percentile(ms, 50):.3f} ms  "
            f"p95 {np.percentile(ms, 95):.3f} ms  recall@10 {recall:.3f}"
        )

    import hnswlib

    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=args.n, M=16, ef_construction=100)
    index.add_items(data, np.arange(args.n))
    built = time.perf_counter() - t
    index.set_ef(100)
    report("hnswlib M16 ef100", built, lambda q: index.knn_query(q, k=10)[0][0])
    try:
        from usearch.index import Index
    except ImportError:
        print("usearch not installed; skipped")
        return
    t = time.perf_counter()
    u = Index(ndim=dim, metric="ip", dtype="f32", connectivity=16, expansion_add=100, expansion_search=100)
    u.add(np.arange(args.n), data)
    built = time.perf_counter() - t
    report("usearch f32 M16 ef100", built, lambda q: u.search(q, 10).keys)


if __name__ == "__main__":
    main()
