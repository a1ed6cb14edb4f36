"""Run a BEIR-format benchmark through the real pipeline: ingest, search every query, score."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ragserve.build import fusion_params
from ragserve.quality.evaluate import Run, evaluate_run, load_beir
from ragserve.rag import RAG
from ragserve.types import FusionParams, ParsedDocument, Scope, SearchMode, Section, StoreQuery

# CLI names of the modes (BEIR speaks of BM25) and the store's.
EVAL_MODES: dict[str, SearchMode] = {"bm25": "keyword", "dense": "dense", "hybrid": "hybrid"}
# Chunks fetched per query: several chunks can share a document, and recall@100 needs 100 documents.
EVAL_DEPTH = 200


@dataclass(slots=True)
class EvalResult:
    metrics: dict[str, dict[str, float]]
    queries: int
    documents: int
    ingest_seconds: float
    search_seconds: dict[str, float]


def beir_documents(
    directory: Path | str, split: str
) -> tuple[list[ParsedDocument], dict[str, str], dict[str, dict[str, int]]]:
    data = load_beir(directory, split)
    docs = [
        ParsedDocument(
            sections=[Section(text=str(row.get("text") or ""))],
            source=f"beir:{row['_id']}",
            title=(str(row.get("title") or "").strip() or None),
            id=str(row["_id"]),
        )
        for row in data.iter_corpus()
        if str(row.get("text") or "").strip() or str(row.get("title") or "").strip()
    ]
    for doc in docs:
        if not doc.sections[0].text.strip() and doc.title:
            doc.sections[0].text = doc.title
    return docs, data.queries, data.qrels


async def evaluate_beir(
    rag: RAG,
    directory: Path | str,
    *,
    split: str = "test",
    modes: Sequence[str] = ("bm25", "dense", "hybrid"),
    scope: Scope,
    fusion: FusionParams | None = None,
    on_status: Callable[[str], None] | None = None,
) -> EvalResult:
    say = on_status or (lambda _msg: None)
    docs, queries, qrels = beir_documents(directory, split)
    say(f"ingesting {len(docs)} documents into collection {scope.collection!r}")
    report = await rag.ingest_parsed(docs, scope)
    say(f"ingested in {report.seconds:.1f}s ({report.created} new, {report.unchanged} unchanged)")
    ids = sorted(queries)
    texts = [queries[q] for q in ids]
    vectors = await rag.embedder.embed_documents(texts) if any(m != "bm25" for m in modes) else None
    base = fusion or fusion_params(rag.settings)
    params = replace(base, candidates=max(base.candidates, 100))
    metrics: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    for mode in modes:
        started = time.perf_counter()
        run: Run = {}
        for i, qid in enumerate(ids):
            query = StoreQuery(
                scope=scope,
                mode=EVAL_MODES[mode],
                k=EVAL_DEPTH,
                vector=None if vectors is None else vectors[i],
                text=texts[i],
                fusion=params,
            )
            scores: dict[str, float] = {}
            for rank, chunk in enumerate(await rag.store.search(query)):
                # A document ranks where its best chunk ranks.
                scores.setdefault(chunk.document_id, float(EVAL_DEPTH - rank))
            run[qid] = scores
        timings[mode] = time.perf_counter() - started
        metrics[mode] = evaluate_run(run, qrels)
        say(f"{mode}: nDCG@10 {metrics[mode]['ndcg@10']:.4f}")
    return EvalResult(metrics, len(ids), len(docs), report.seconds, timings)
