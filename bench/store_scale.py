"""Search and query latency of the embedded store at scale, and the process's peak memory.

The corpus is synthetic (a Zipf vocabulary for the text, clustered random unit vectors),
because only the store's size matters here; query embedding uses the real local model.

    python bench/store_scale.py --chunks 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ragserve.build import fusion_params
from ragserve.ingest.pipeline import content_hash
from ragserve.llm.extractive import ExtractiveAnswerer
from ragserve.settings import Settings
from ragserve.store.ann import HnswParams
from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.types import ChunkRecord, DocumentWrite, ParsedDocument, Scope, Section, StoreQuery

DIM = 384
VOCAB = 30_000
WORDS_PER_CHUNK = 120


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {f"p{p}": float(np.percentile(ms, p)) for p in (50, 95, 99)}


def synthetic_batches(n: int, batch: int, seed: int = 7):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(VOCAB)])
    zipf = 1.0 / np.arange(1, VOCAB + 1)
    zipf /= zipf.sum()
    centers = rng.standard_normal((2000, DIM)).astype(np.float32)
    for start in range(0, n, batch):
        size = min(batch, n - start)
        vectors = centers[rng.integers(0, len(centers), size)] + 0.5 * rng.standard_normal((size, DIM)).astype(
            np.float32
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        tokens = rng.choice(VOCAB, size=(size, WORDS_PER_CHUNK), p=zipf)
        docs = []
        for i in range(size):
            text = " ".join(words[tokens[i]])
            doc_id = f"doc{start + i}"
            parsed = ParsedDocument([Section(text)], source=doc_id, id=doc_id)
            docs.append(
                DocumentWrite(doc_id, content_hash(parsed, "bench"), [ChunkRecord(text, 0, vectors[i])], source=doc_id)
            )
        yield docs


def build(data_dir: Path, n: int) -> float:
    store = EmbeddedVectorStore(data_dir, DIM, "all-MiniLM-L6-v2", HnswParams())
    started = time.perf_counter()
    for docs in synthetic_batches(n, 20_000):
        store.upsert_sync(Scope(), docs)
    store.search_sync(StoreQuery(Scope(), "dense", 1, vector=np.ones(DIM, np.float32) / np.sqrt(DIM)))
    store.close()
    return time.perf_counter() - started


async def measure(data_dir: Path, queries: int) -> dict[str, object]:
    from ragserve.embed.local import LocalEmbedder

    settings = Settings(data_dir=data_dir)
    opened = time.perf_counter()
    store = EmbeddedVectorStore(data_dir, DIM, "all-MiniLM-L6-v2", HnswParams())
    open_s = time.perf_counter() - opened
    embedder = LocalEmbedder(settings.embed_backend, cache_dir=data_dir.parent / "models")
    answerer = ExtractiveAnswerer()
    rng = np.random.default_rng(11)
    texts = [" ".join(f"w{w}" for w in rng.integers(0, 3000, 6)) for _ in range(queries)]
    vectors = await embedder.embed_documents(texts)
    fusion = fusion_params(settings)
    out: dict[str, object] = {"open_s": open_s}
    for mode in ("dense", "keyword", "hybrid"):
        lat = []
        for i in range(queries):
            q = StoreQuery(Scope(), mode, settings.top_k, vector=vectors[i], text=texts[i], fusion=fusion)
            t = time.perf_counter()
            await store.search(q)
            lat.append(time.perf_counter() - t)
        out[f"search_{mode}"] = percentiles(lat[5:])
    lat = []
    for i in range(queries):
        t = time.perf_counter()
        vector = await embedder.embed_query(texts[i])
        q = StoreQuery(Scope(), "hybrid", settings.top_k, vector=vector, text=texts[i], fusion=fusion)
        chunks = await store.search(q)
        await answerer.generate(texts[i], chunks)
        lat.append(time.perf_counter() - t)
    out["query_hybrid_extractive"] = percentiles(lat[5:])
    await embedder.aclose()
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--dir", type=Path, help="reuse or keep the store here (default: a temporary directory)")
    parser.add_argument("--phase", choices=["all", "build", "measure"], default="all")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ragserve-bench-"))
    data_dir = root / f"store-{args.chunks}"
    result: dict[str, object] = {"chunks": args.chunks}
    try:
        if args.phase == "build":
            result["build_s"] = build(data_dir, args.chunks)
        elif args.phase == "measure":
            result.update(asyncio.run(measure(data_dir, args.queries)))
        else:
            # Build and measure in separate processes so peak memory is the serving process's own.
            if not (data_dir / "ragserve.sqlite3").exists():
                built = _child(args, root, "build")
                result["build_s"] = built["build_s"]
                result["build_peak_rss_mb"] = built["peak_rss_mb"]
            result.update(_child(args, root, "measure"))
    finally:
        if args.dir is None and args.phase == "all":
            shutil.rmtree(root, ignore_errors=True)
    result.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    json.dump(result, sys.stdout, indent=2)
    print()


def _child(args: argparse.Namespace, root: Path, phase: str) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--chunks", str(args.chunks), "--queries", str(args.queries)]
    done = subprocess.run([*cmd, "--dir", str(root), "--phase", phase], check=True, capture_output=True, text=True)
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


if __name__ == "__main__":
    main()
