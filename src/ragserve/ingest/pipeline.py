"""parse -> chunk -> embed -> write, with unchanged documents skipped before any embedding.

Embedding dominates ingestion, so the pipeline keeps the embedder busy: while one batch is
written (SQLite, Tantivy, HNSW) the next one is already being embedded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ragserve.embed.base import Embedder
from ragserve.ingest.chunk import ChunkingConfig, TokenCounter, chunk_document, embedding_text
from ragserve.ingest.parse import ParseFailure
from ragserve.store.base import VectorStore
from ragserve.types import Chunk, ChunkRecord, DocumentWrite, ParsedDocument, Scope, WriteResult


@dataclass(slots=True)
class IngestProgress:
    documents_total: int
    documents_done: int = 0
    chunks_done: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def chunks_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.chunks_done / elapsed if elapsed > 0 else 0.0


@dataclass(slots=True)
class IngestReport:
    results: list[WriteResult] = field(default_factory=list)
    failures: list[ParseFailure] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def created(self) -> int:
        return self.count("created")

    @property
    def updated(self) -> int:
        return self.count("updated")

    @property
    def unchanged(self) -> int:
        return self.count("unchanged")


ProgressCallback = Callable[[IngestProgress], None]
WrittenCallback = Callable[[Scope, list[str]], Awaitable[None]]


def content_hash(doc: ParsedDocument, fingerprint: str) -> str:
    """Hash of everything that shapes the stored chunks, the pipeline's own settings included:
    re-ingesting after a chunking or model change re-embeds instead of keeping stale vectors."""
    payload = json.dumps(
        {
            "text": doc.text,
            "sections": [[list(s.headings), s.page] for s in doc.sections],
            "title": doc.title,
            "source": doc.source,
            "metadata": doc.metadata,
            "pipeline": fingerprint,
        },
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class IngestPipeline:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        counter: TokenCounter,
        chunking: ChunkingConfig,
        *,
        batch_chunks: int = 512,
        on_written: WrittenCallback | None = None,
    ) -> None:
        self._embedder = embedder
        self.on_written = on_written  # told which documents changed, after their write returned
        self._store = store
        self._counter = counter
        self._chunking = chunking
        self._batch_chunks = batch_chunks
        self.fingerprint = (
            f"{embedder.model_name}:{chunking.max_tokens}:{chunking.overlap_tokens}:{chunking.window_tokens}"
        )

    async def ingest(
        self,
        scope: Scope,
        documents: Iterable[ParsedDocument],
        *,
        failures: Sequence[ParseFailure] = (),
        on_progress: ProgressCallback | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        docs = _last_wins(documents)
        report = IngestReport(failures=list(failures))
        progress = IngestProgress(documents_total=len(docs))
        hashes = {doc_id: content_hash(doc, self.fingerprint) for doc_id, doc in docs.items()}
        stored = await self._store.document_states(scope, list(docs))
        changed = []
        for doc_id in docs:
            state = stored.get(doc_id)
            if state is not None and state.content_hash == hashes[doc_id]:
                report.results.append(WriteResult(doc_id, "unchanged", state.version, state.chunk_count))
                progress.documents_done += 1
            else:
                changed.append(doc_id)
        if on_progress:
            on_progress(progress)

        pending: asyncio.Task[list[WriteResult]] | None = None
        pending_size = (0, 0)
        batches, empty = await asyncio.to_thread(self._chunk_batches, changed, docs)
        for doc_id in empty:
            report.failures.append(ParseFailure(docs[doc_id].source, f"document {doc_id!r} has no text to index"))
            progress.documents_done += 1
        for batch in batches:
            texts = [embedding_text(c, docs[doc_id].title) for doc_id, chunks in batch for c in chunks]
            vectors = await self._embedder.embed_documents(texts)
            writes, offset = [], 0
            for doc_id, chunks in batch:
                doc = docs[doc_id]
                records = [
                    ChunkRecord(c.text, c.index, vectors[offset + i], c.headings, c.page) for i, c in enumerate(chunks)
                ]
                offset += len(chunks)
                writes.append(DocumentWrite(doc_id, hashes[doc_id], records, doc.title, doc.source, doc.metadata))
            if pending is not None:
                report.results.extend(await pending)
                self._advance(progress, pending_size, on_progress)
            pending = asyncio.create_task(self._store.upsert(scope, writes))
            pending_size = (len(batch), len(texts))
            report.chunks += len(texts)
        if pending is not None:
            report.results.extend(await pending)
            self._advance(progress, pending_size, on_progress)
        written = [r.id for r in report.results if r.status != "unchanged"]
        if written and self.on_written is not None:
            await self.on_written(scope, written)
        # Results in input order, so callers can pair them with what they sent.
        position = {doc_id: i for i, doc_id in enumerate(docs)}
        report.results.sort(key=lambda r: position[r.id])
        report.seconds = time.perf_counter() - started
        return report

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        return chunk_document(doc, self._counter, self._chunking)

    @staticmethod
    def _advance(progress: IngestProgress, size: tuple[int, int], on_progress: ProgressCallback | None) -> None:
        progress.documents_done += size[0]
        progress.chunks_done += size[1]
        if on_progress:
            on_progress(progress)

    def _chunk_batches(
        self, ids: list[str], docs: dict[str, ParsedDocument]
    ) -> tuple[list[list[tuple[str, list[Chunk]]]], list[str]]:
        batches: list[list[tuple[str, list[Chunk]]]] = []
        empty: list[str] = []
        current: list[tuple[str, list[Chunk]]] = []
        size = 0
        for doc_id in ids:
            chunks = self.chunk(docs[doc_id])
            if not chunks:
                empty.append(doc_id)
                continue
            current.append((doc_id, chunks))
            size += len(chunks)
            if size >= self._batch_chunks:
                batches.append(current)
                current, size = [], 0
        if current:
            batches.append(current)
        return batches, empty


def _last_wins(documents: Iterable[ParsedDocument]) -> dict[str, ParsedDocument]:
    """Documents by id; when an id repeats in one call, the last occurrence is the one kept."""
    out: dict[str, ParsedDocument] = {}
    for doc in documents:
        doc_id = doc.id or doc.source
        out.pop(doc_id, None)
        out[doc_id] = doc
    return out
