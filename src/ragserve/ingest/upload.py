"""Uploaded files: safe names, formats sniffed from the bytes, parsed and ingested file by file.

A client's filename and content type are hints at best and hostile at worst: the name is
sanitised into a display name (which becomes the documents' source and id, as a path does
for files ingested from disk) and the format is decided by the content alone.

    checked = check_upload(data, sanitize_filename(raw_name), max_bytes=25 << 20)
    if isinstance(checked, FileError):
        print(checked.message)
    else:
        report = await ingest_uploads(pipeline, scope, [checked], metadata={"team": "docs"})
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragserve.errors import ParseError, PayloadTooLargeError, RagserveError, UnsupportedMediaError
from ragserve.ingest.parse import Kind, parse_bytes, sniff
from ragserve.ingest.pipeline import IngestPipeline, IngestProgress
from ragserve.observability.metrics import get_metrics
from ragserve.types import Metadata, ParsedDocument, Scope

SUPPORTED_FORMATS = "PDF, DOCX, HTML, Markdown, plain text, JSON, JSON Lines"
MAX_FILENAME_CHARS = 120
MAX_SUFFIX_CHARS = 16
FALLBACK_FILENAME = "upload"

_UNSAFE_CHARS = re.compile(r'[<>:"|?*]')  # reserved on Windows, and confusing in a URL path
_DOT_RUN = re.compile(r"\.{2,}")


def sanitize_filename(name: str | None, *, max_chars: int = MAX_FILENAME_CHARS) -> str:
    """A display name safe to show, log and use as a document id: no directories, no control or
    format characters (NUL, bidi overrides), no `..`, at most `max_chars` characters, suffix kept."""
    text = unicodedata.normalize("NFC", name or "")
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    # Both separators: browsers on Windows may send the full client path.
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _DOT_RUN.sub(".", _UNSAFE_CHARS.sub("_", text))
    # Leading dots hide a file; trailing dots and spaces vanish on Windows.
    text = " ".join(text.split()).strip(" .")
    if len(text) > max_chars:
        stem, dot, suffix = text.rpartition(".")
        if dot and stem and len(suffix) <= MAX_SUFFIX_CHARS:
            text = stem[: max_chars - len(suffix) - 1].rstrip(" .") + "." + suffix
        else:
            text = text[:max_chars].rstrip(" .")
    return text or FALLBACK_FILENAME


@dataclass(frozen=True, slots=True)
class FileError:
    """Why one uploaded file produced no documents. The message names the file."""

    filename: str
    type: str
    message: str

    @classmethod
    def of(cls, filename: str, exc: RagserveError) -> FileError:
        if isinstance(exc, UnsupportedMediaError):
            message = f"file '{filename}' is not in a supported format ({exc.message}); supported: {SUPPORTED_FORMATS}"
        elif isinstance(exc, PayloadTooLargeError):
            message = f"file '{filename}' is too large: {exc.message}"
        else:
            message = f"file '{filename}' could not be ingested: {exc.message}"
        return cls(filename, exc.type, message)


def too_large(filename: str, size: int, max_bytes: int) -> FileError:
    return FileError.of(filename, PayloadTooLargeError(f"{size:,} bytes (limit {max_bytes:,} per file)"))


@dataclass(frozen=True, slots=True)
class StagedFile:
    """An upload that passed the size and format checks, in memory or staged on disk."""

    filename: str
    format: Kind
    size: int
    data: bytes | None = None
    path: Path | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError(f"staged file {self.filename!r} has neither data nor a path")
        return self.path.read_bytes()


def check_upload(data: bytes, filename: str, *, max_bytes: int) -> StagedFile | FileError:
    """Size and sniffed format of one upload; blocking (decodes text), so call it in a thread."""
    if len(data) > max_bytes:
        return too_large(filename, len(data), max_bytes)
    try:
        kind = sniff(data, filename)
    except RagserveError as exc:
        return FileError.of(filename, exc)
    return StagedFile(filename, kind, len(data), data=data)


def rejection(errors: Sequence[FileError]) -> RagserveError:
    """The error for an upload of which no file could be ingested: 413 when every file was too
    large, 415 when every one was of an unsupported format, else a parse error (422)."""
    message = "no file could be ingested: " + "; ".join(e.message for e in errors)
    kinds = {e.type for e in errors}
    if kinds == {PayloadTooLargeError.type}:
        return PayloadTooLargeError(message)
    if kinds == {UnsupportedMediaError.type}:
        return UnsupportedMediaError(message)
    return ParseError(message)


@dataclass(frozen=True, slots=True)
class UploadedDocument:
    filename: str
    format: str
    id: str
    status: Literal["created", "updated", "unchanged"]
    version: int
    chunks: int


@dataclass(slots=True)
class UploadProgress:
    """Per stage: parse counts files; ingest (chunk, embed, write) counts documents and chunks."""

    stage: Literal["queued", "parse", "ingest", "done"] = "queued"
    files_total: int = 0
    files_parsed: int = 0
    documents_total: int = 0
    documents_done: int = 0
    chunks_done: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class UploadReport:
    documents: list[UploadedDocument] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    chunks: int = 0

    def summary(self) -> dict[str, Any]:
        """The JSON-ready result of a job."""
        return {
            "documents": [asdict(d) for d in self.documents],
            "chunks": self.chunks,
            **{
                status: sum(d.status == status for d in self.documents)
                for status in ("created", "updated", "unchanged")
            },
        }


async def ingest_uploads(
    pipeline: IngestPipeline,
    scope: Scope,
    files: Sequence[StagedFile],
    *,
    metadata: Metadata | None = None,
    max_file_bytes: int,
    on_progress: Callable[[UploadProgress], None] | None = None,
    parse_timeout_s: float | None = None,
) -> UploadReport:
    """Parse each file by its content and ingest every document; a bad file fails alone.

    `metadata` is merged into every document's own, and wins where both name a key. A file
    whose parsing takes over `parse_timeout_s` fails alone too ("took too long"): a
    pathological PDF must not hold a whole job.
    """
    progress = UploadProgress(stage="parse", files_total=len(files))
    report = UploadReport()
    notify = on_progress or (lambda _: None)
    notify(progress)
    documents: list[ParsedDocument] = []
    owners: dict[str, StagedFile] = {}
    for file in files:
        parsed = await _parse_within(file, max_file_bytes, parse_timeout_s)
        if isinstance(parsed, FileError):
            report.errors.append(parsed)
        else:
            for doc in parsed:
                doc.metadata = {**doc.metadata, **(metadata or {})}
                owners[doc.id or doc.source] = file  # a later file with the same id replaces the earlier one
            documents.extend(parsed)
        progress.files_parsed += 1
        notify(progress)
    if not documents:
        progress.stage = "done"
        notify(progress)
        return report

    progress.stage = "ingest"

    def on_ingest(step: IngestProgress) -> None:
        progress.documents_total = step.documents_total
        progress.documents_done = step.documents_done
        progress.chunks_done = step.chunks_done
        notify(progress)

    ingested = await pipeline.ingest(scope, documents, on_progress=on_ingest)
    get_metrics().ingest_chunks.inc(ingested.chunks)
    for result in ingested.results:
        owner = owners[result.id]
        report.documents.append(
            UploadedDocument(owner.filename, owner.format, result.id, result.status, result.version, result.chunk_count)
        )
    report.errors.extend(FileError.of(f.source, ParseError(f.reason)) for f in ingested.failures)
    report.chunks = ingested.chunks
    progress.stage = "done"
    notify(progress)
    return report


async def _parse_within(file: StagedFile, max_bytes: int, limit_s: float | None) -> list[ParsedDocument] | FileError:
    try:
        async with asyncio.timeout(limit_s):
            # The thread cannot be stopped; it finishes in the background and its result is dropped.
            return await asyncio.to_thread(_parse, file, max_bytes)
    except TimeoutError:
        return FileError.of(file.filename, ParseError(f"parsing took longer than {limit_s:g} s; the file was skipped"))


def _parse(file: StagedFile, max_bytes: int) -> list[ParsedDocument] | FileError:
    try:
        return parse_bytes(file.read(), file.filename, max_bytes=max_bytes)
    except RagserveError as exc:
        return FileError.of(file.filename, exc)
    except OSError as exc:
        return FileError.of(file.filename, ParseError(f"staged file unreadable: {exc.strerror or exc}"))
