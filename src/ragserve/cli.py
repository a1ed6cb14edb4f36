"""The `ragserve` command: ingest, query, search, eval, keys, worker, serve."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ragserve import cli_db, cli_keys
from ragserve.errors import ConfigurationError, RagserveError
from ragserve.ingest.pipeline import IngestProgress, IngestReport
from ragserve.rag import RAG
from ragserve.settings import Settings, load_settings
from ragserve.store import migrate

console = Console(stderr=True)
out = Console()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragserve", description="Retrieval-augmented answers with cited sources.")
    parser.add_argument("--data-dir", type=Path, help="where embedded state lives (RAGSERVE_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = sub.add_parser("ingest", help="add files and directories to a collection")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--collection", "-c", help="collection (RAGSERVE_DEFAULT_COLLECTION)")
    ingest.add_argument("--tenant", help="tenant owning the collection (RAGSERVE_DEFAULT_TENANT)")

    for name, helptext in (("query", "answer a question with cited sources"), ("search", "retrieve chunks only")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("text", metavar="QUESTION")
        p.add_argument("--collection", "-c")
        p.add_argument("--tenant")
        p.add_argument("--top-k", "-k", type=int)
        p.add_argument("--mode", choices=["dense", "keyword", "hybrid"])
        p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="metadata filter (repeat)")
        p.add_argument("--json", action="store_true", help="print JSON")

    ev = sub.add_parser("eval", help="score retrieval on a BEIR-format dataset")
    ev.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    ev.add_argument("--split", default="test")
    ev.add_argument("--mode", choices=["bm25", "dense", "hybrid", "all"], default="all")
    ev.add_argument("--collection", help="scratch collection (default: eval-<dataset name>)")
    ev.add_argument("--drop", action="store_true", help="delete the scratch collection afterwards")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")

    cli_keys.add_parser(sub)
    migrate.add_parser(sub)
    cli_db.add_parser(sub)

    worker = sub.add_parser("worker", help="run ingestion jobs from the queue (RAGSERVE_QUEUE_URL)")
    worker.add_argument("--concurrency", type=int, help="worker processes (RAGSERVE_JOB_WORKERS)")
    worker.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics here (0: off)")

    serve = sub.add_parser("serve", help="run the HTTP API and web page")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes; above 1 runs gunicorn (RAGSERVE_WORKERS)")
    return parser


def _filters(items: Sequence[str]) -> dict[str, Any] | None:
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RagserveError(f"--filter {item!r}: expected KEY=VALUE")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        filters.setdefault(key, []).append(parsed)
    return {k: v[0] if len(v) == 1 else v for k, v in filters.items()} or None


async def _ingest(rag: RAG, args: argparse.Namespace) -> int:
    scope = rag.scope(args.collection, args.tenant)
    columns = (
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("docs · {task.fields[chunks]} chunks · {task.fields[rate]:.0f} chunks/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("ingest", total=None, chunks=0, rate=0.0)

        def show(p: IngestProgress) -> None:
            bar.update(
                task,
                total=p.documents_total,
                completed=p.documents_done,
                chunks=p.chunks_done,
                rate=p.chunks_per_second,
            )

        report = await rag.ingest_paths(args.paths, scope, on_progress=show)
    _print_report(report, scope.collection)
    return 1 if report.failures and not report.results else 0


def _print_report(report: IngestReport, collection: str) -> None:
    console.print(
        f"[bold]{collection}[/]: {report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.chunks} chunks written, {len(report.failures)} failed, in {report.seconds:.1f}s"
    )
    for failure in report.failures:
        console.print(f"  [red]failed[/] {failure.source}: {failure.reason}")


async def _ask(rag: RAG, args: argparse.Namespace) -> int:
    scope = rag.scope(args.collection, args.tenant)
    filters = _filters(args.filter)
    if args.command == "search":
        result = await rag.search(args.text, scope, top_k=args.top_k, mode=args.mode, filters=filters)
        if args.json:
            out.print_json(data=[_chunk_json(c) for c in result.chunks])
            return 0
        for n, chunk in enumerate(result.chunks, start=1):
            out.print(f"[bold][{n}][/] {chunk.title or chunk.document_id}  ({chunk.source})  score {chunk.score:.4f}")
            out.print("    " + " ".join(chunk.text.split())[:300], highlight=False)
        return 0
    answer = await rag.query(args.text, scope, top_k=args.top_k, mode=args.mode, filters=filters)
    if args.json:
        from ragserve.api.schemas import QueryResponse

        out.print_json(QueryResponse.from_answer(answer, request_id="cli").model_dump_json())
        return 0
    out.print(answer.answer, highlight=False)
    if answer.citations:
        out.print("\n[bold]Sources[/]")
        for c in answer.citations:
            out.print(f"  [{c.number}] {c.title or c.document_id} ({c.source})", highlight=False)
    if answer.failures or answer.degraded or answer.provider != "extractive":
        note = f"answered by {answer.provider} ({answer.model})"
        if answer.failures:
            note += " after " + ", ".join(f"{f.provider}: {f.error}" for f in answer.failures)
        if answer.degraded:
            note += "; degraded: " + ", ".join(answer.degraded)
        out.print(f"\n[dim]{note}[/]", highlight=False)
    return 0


def _chunk_json(chunk: Any) -> dict[str, Any]:
    return {
        "document_id": chunk.document_id,
        "chunk_id": chunk.chunk_id,
        "title": chunk.title,
        "source": chunk.source,
        "score": chunk.score,
        "text": chunk.text,
    }


async def _eval(rag: RAG, args: argparse.Namespace) -> int:
    from ragserve.quality.beir import EVAL_MODES, evaluate_beir

    modes = list(EVAL_MODES) if args.mode == "all" else [args.mode]
    name = args.collection or "eval-" + "".join(ch if ch.isalnum() else "-" for ch in args.dataset.resolve().name)
    scope = rag.scope(name)
    result = await evaluate_beir(
        rag,
        args.dataset,
        split=args.split,
        modes=modes,
        scope=scope,
        on_status=None if args.json else (lambda msg: console.print(msg)),
    )
    if args.drop:
        await rag.store.drop_collection(scope)
    if args.json:
        print(json.dumps(result.metrics, indent=2))
        return 0
    out.print(f"{args.dataset} split={args.split}: {result.queries} queries, {result.documents} documents")
    out.print(f"{'mode':<8} {'nDCG@10':>8} {'R@10':>8} {'R@100':>8} {'MRR@10':>8}")
    for mode, m in result.metrics.items():
        out.print(f"{mode:<8} {m['ndcg@10']:>8.4f} {m['recall@10']:>8.4f} {m['recall@100']:>8.4f} {m['mrr@10']:>8.4f}")
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from ragserve.api.server import serve
    from ragserve.observability.logging import configure_logging

    configure_logging(settings)
    workers = args.workers or settings.workers
    if workers > 1:
        # Each worker builds its own app from the environment: pass on what the command line chose.
        os.environ["RAGSERVE_DATA_DIR"] = str(settings.data_dir)
    serve(settings, args.host or settings.host, args.port or settings.port, workers)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.queue_url:
        raise ConfigurationError("ragserve worker needs RAGSERVE_QUEUE_URL (e.g. redis://127.0.0.1:6379/1)")
    from ragserve.observability.logging import configure_logging
    from ragserve.worker.celery_app import run_worker

    configure_logging(settings)
    run_worker(settings, args.concurrency or settings.job_workers, args.metrics_port)
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    async with await RAG.from_settings(settings) as rag:
        if args.command == "ingest":
            return await _ingest(rag, args)
        if args.command in ("query", "search"):
            return await _ask(rag, args)
        return await _eval(rag, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        overrides: dict[str, object] = {"data_dir": args.data_dir} if args.data_dir else {}
        settings = load_settings(**overrides)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "worker":
            return _worker(settings, args)
        if args.command == "keys":
            return asyncio.run(cli_keys.run(settings, args, out))
        if args.command == "migrate-store":
            return asyncio.run(migrate.run(settings, args, lambda line: out.print(line, highlight=False)))
        if args.command == "db":
            return cli_db.run(settings, args, out)
        return asyncio.run(_run(settings, args))
    except RagserveError as exc:
        console.print(f"[red]error:[/] {exc.message}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
