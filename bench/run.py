"""`make bench`: every benchmark, each printing its table.

python bench/run.py [--sizes 100000,1000000] [--scifact ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(HERE / script), *args], check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="store sizes in chunks, comma-separated")
    parser.add_argument("--scifact", type=Path, default=HERE.parent.parent / "shared" / "data" / "scifact")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    if (args.scifact / "corpus.jsonl").exists():
        r = child("ingest_scifact.py", str(args.scifact))
        print("## Ingestion (SciFact corpus, local embedder)\n")
        print("| backend | docs | chunks | raw model chunks/s | ingest chunks/s | ratio | re-ingest (unchanged) |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| {r['backend']} | {r['documents']} | {r['chunks']} | {r['raw_chunks_per_s']:.1f} | "
            f"{r['ingest_chunks_per_s']:.1f} | {r['ratio']:.1%} | {r['reingest_s']:.2f}s "
            f"({r['reingest_fraction']:.1%} of first) |"
        )
        print(f"\npeak RSS {r['peak_rss_mb']:.0f} MB\n", flush=True)
        print("## Ingestion jobs: in the API process vs on Celery workers\n")
        print("| mode | workers | documents | jobs | chunks | seconds | chunks/s |")
        print("|---|---|---|---|---|---|---|")
        queued = child("ingest_queue.py", str(args.scifact), "--limit", "600")["rows"]
        assert isinstance(queued, list)
        for q in queued:
            print(
                f"| {q['mode']} | {q['workers']} | {q['documents']} | {q['jobs']} | {q['chunks']} | "
                f"{q['seconds']} | {q['chunks_per_s']} |",
                flush=True,
            )
        print()
    else:
        print(f"SciFact not found at {args.scifact}; ingestion benchmark skipped\n")

    print("## Latency at scale (synthetic chunks; query embedding excluded from search)\n")
    print(
        "| chunks | search dense p50/p95/p99 | keyword p50/p95/p99 | hybrid p50/p95/p99 | "
        "query (embed+hybrid+extractive) p50/p95/p99 | open s | build s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",") if s):
        r = child("store_scale.py", "--chunks", str(size), "--queries", str(args.queries))

        def fmt(key: str, r: dict[str, object] = r) -> str:
            p = r[key]
            assert isinstance(p, dict)
            return f"{p['p50']:.2f} / {p['p95']:.2f} / {p['p99']:.2f}"

        print(
            f"| {size:,} | {fmt('search_dense')} | {fmt('search_keyword')} | {fmt('search_hybrid')} | "
            f"{fmt('query_hybrid_extractive')} | {r['open_s']:.1f} | {r.get('build_s', 0):.0f} | "
            f"{r['peak_rss_mb']:.0f} |",
            flush=True,
        )

    print("\n## HTTP layer and cached answers (one worker, loopback)\n")
    h = child("http_overhead.py")
    seq = h["sequential"]
    assert isinstance(seq, dict)
    print(
        f"HTTP overhead per query p50/p95/p99: {seq['http_overhead_ms']['p50']:.2f} / "
        f"{seq['http_overhead_ms']['p95']:.2f} / {seq['http_overhead_ms']['p99']:.2f} ms\n"
    )
    c = child("cached_query.py")
    print("| | server-side p50 / p95 ms | req/s (wrk -c8) |\n|---|---|---|")
    for kind in ("cached", "uncached"):
        row, load = c[kind], c[f"wrk_{kind}"]
        assert isinstance(row, dict) and isinstance(load, dict)
        ms = row["server_ms"]
        print(f"| {kind} | {ms['p50']:.2f} / {ms['p95']:.2f} | {load['requests_per_s']:.0f} |", flush=True)
    if (args.scifact / "queries.jsonl").exists():
        print("\n## Semantic cache on SciFact claims (test split)\n")
        done = subprocess.run(
            [sys.executable, str(HERE / "semantic_cache.py"), "--split", "test", "--limit", "0"],
            capture_output=True,
            text=True,
        )
        print(done.stderr if done.returncode == 0 else f"skipped: {done.stderr.strip().splitlines()[-1:]}")


if __name__ == "__main__":
    main()
