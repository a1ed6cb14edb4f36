"""Ingestion throughput on the SciFact corpus next to the raw embedder throughput, same run.

Raw throughput embeds exactly the chunk texts the pipeline produces, with the same
embedder; the ratio says how much parsing, chunking and writing cost on top of the model.
A second ingest of the unchanged corpus measures the no-op path.

    python bench/ingest_scifact.py ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ragserve.build import build_rag
from ragserve.ingest.chunk import embedding_text
from ragserve.quality.beir import beir_documents
from ragserve.settings import Settings


async def run(dataset: Path, data_dir: Path, limit: int | None) -> dict[str, object]:
    docs, _, _ = beir_documents(dataset, "test")
    docs = docs[:limit] if limit else docs
    rag = await build_rag(Settings(data_dir=data_dir))
    try:
        chunked = [(d, c) for d in docs for c in rag.pipeline.chunk(d)]
        texts = [embedding_text(c, d.title) for d, c in chunked]
        await rag.embedder.embed_documents(texts[:64])  # warm-up
        started = time.perf_counter()
        await rag.embedder.embed_documents(texts)
        raw_s = time.perf_counter() - started
        scope = rag.scope("bench-scifact")
        first = await rag.ingest_parsed(docs, scope)
        again = await rag.ingest_parsed(docs, scope)
        return {
            "backend": getattr(rag.embedder, "backend", "?"),
            "documents": len(docs),
            "chunks": first.chunks,
            "raw_chunks_per_s": len(texts) / raw_s,
            "ingest_chunks_per_s": first.chunks / first.seconds,
            "ratio": (first.chunks / first.seconds) / (len(texts) / raw_s),
            "ingest_s": first.seconds,
            "reingest_s": again.seconds,
            "reingest_unchanged": again.unchanged,
            "reingest_fraction": again.seconds / first.seconds,
        }
    finally:
        await rag.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path, nargs="?", default=Path("../shared/data/scifact"))
    parser.add_argument("--limit", type=int, help="only the first N documents")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="ragserve-ingest-"))
    try:
        result = asyncio.run(run(args.dataset, data_dir, args.limit))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
