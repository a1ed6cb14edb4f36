"""Turn files and uploads into `ParsedDocument`s.

Files are parsed by their suffix; uploads (`parse_bytes`) by what their content is,
the filename being only a hint. A batch never stops for one bad file:

    for item in parse_paths(["docs/", "notes.md"]):
        if isinstance(item, ParseFailure):
            print(f"skipped {item.source}: {item.reason}")
        else:
            index(item)
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import charset_normalizer

from ragserve.errors import (
    InvalidInputError,
    ParseError,
    PayloadTooLargeError,
    RagserveError,
    UnsupportedMediaError,
)
from ragserve.ingest import formats
from ragserve.ingest.archive import check_archive
from ragserve.types import ParsedDocument

MAX_FILE_BYTES = 100 * 1024 * 1024
# A DOCX may inflate to 10x its size limit, but never past this: python-docx holds it in memory.
MAX_DOCX_INFLATED_BYTES = 200 * 1024 * 1024

Kind = Literal["text", "markdown", "html", "pdf", "docx", "json", "jsonl"]
_KIND_BY_SUFFIX: dict[str, Kind] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".json": "json",
    ".jsonl": "jsonl",
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_KIND_BY_SUFFIX)

_TEXT_PARSERS: dict[Kind, Callable[[str, str], list[ParsedDocument]]] = {
    "text": formats.parse_text,
    "markdown": formats.parse_markdown,
    "html": formats.parse_html,
    "json": formats.parse_json,
    "jsonl": formats.parse_jsonl,
}

BINARY_REASON = "binary content, not text"
EMPTY_REASON = "empty file"


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """A file that produced no documents, and why."""

    source: str
    reason: str


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Yield the files named, and every non-hidden file under the directories named.

    All paths are checked before the first one is yielded, so a typo fails the whole
    call up front instead of half-way through an ingest.
    """
    roots = [Path(p) for p in paths]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise InvalidInputError(f"path does not exist: {', '.join(missing)}", field="paths")
    special = [str(p) for p in roots if not (p.is_file() or p.is_dir())]
    if special:
        raise InvalidInputError(f"not a file or directory: {', '.join(special)}", field="paths")

    seen: set[Path] = set()
    for root in roots:
        for path in [root] if root.is_file() else _walk(root):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                yield path


def _walk(directory: Path) -> Iterator[Path]:
    for current, dirnames, filenames in os.walk(directory):
        # Sorting in place fixes the order os.walk descends in, making ingests reproducible.
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            path = Path(current, name)
            if not name.startswith(".") and path.is_file():
                yield path


def source_name(path: Path) -> str:
    """The path relative to the working directory when inside it, else absolute; `/` separators."""
    absolute = Path(os.path.abspath(path))  # not resolve(): keep the symlinked name the user gave
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


def parse_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> list[ParsedDocument]:
    """Parse one file by its suffix. Raises `ParseError` or an `InvalidInputError` subclass."""
    path = Path(path)
    kind = _KIND_BY_SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise UnsupportedMediaError(_unsupported_reason(path.suffix))
    try:
        _check_size(path.stat().st_size, max_bytes)
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    return _parse_as(kind, data, source_name(path), max_bytes)


def parse_bytes(data: bytes, filename: str, *, max_bytes: int = MAX_FILE_BYTES) -> list[ParsedDocument]:
    """Parse an upload. The type is sniffed from `data`; `filename`'s suffix only breaks ties."""
    _check_size(len(data), max_bytes)
    kind, text = _sniff(data, Path(filename).suffix.lower())
    if text is None:
        return _parse_as(kind, data, filename, max_bytes)
    return _TEXT_PARSERS[kind](text, filename)


def sniff(data: bytes, filename: str) -> Kind:
    """The format `parse_bytes` would parse `data` as. Raises `UnsupportedMediaError`, or `ParseError` when empty."""
    return _sniff(data, Path(filename).suffix.lower())[0]


def parse_paths(
    paths: Iterable[str | Path], *, max_bytes: int = MAX_FILE_BYTES
) -> Iterator[ParsedDocument | ParseFailure]:
    """Parse every file under `paths`; a file that fails yields a `ParseFailure` and the batch goes on."""
    for path in iter_files(paths):
        try:
            documents = parse_file(path, max_bytes=max_bytes)
        except RagserveError as exc:
            yield ParseFailure(source_name(path), exc.message)
        else:
            yield from documents


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise PayloadTooLargeError(f"file too large: {size:,} bytes (limit {max_bytes:,})")


def _unsupported_reason(suffix: str) -> str:
    what = f"'{suffix}'" if suffix else "(no suffix)"
    return f"unsupported file type {what} (supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"


def _parse_as(kind: Kind, data: bytes, source: str, max_bytes: int) -> list[ParsedDocument]:
    if not data.strip():
        raise ParseError(EMPTY_REASON)
    if kind == "pdf":
        return formats.parse_pdf(data, source)
    if kind == "docx":
        check_archive(data, max_total_bytes=min(10 * max_bytes, MAX_DOCX_INFLATED_BYTES))
        return formats.parse_docx(data, source)
    return _TEXT_PARSERS[kind](decode_text(data), source)


# --- Sniffing -------------------------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"
_HTML_DOCUMENT = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_HTML_BLOCK = re.compile(r"<(?:p|div|h[1-6]|ul|ol|table|article|section|main)[\s>]", re.IGNORECASE)


def _sniff(data: bytes, hint: str) -> tuple[Kind, str | None]:
    """The kind of `data`, and its decoded text when it is a text format."""
    if not data.strip():
        raise ParseError(EMPTY_REASON)
    if data.lstrip().startswith(b"%PDF-"):
        return "pdf", None
    if data.startswith(_ZIP_MAGIC):
        if _is_docx(data):
            return "docx", None
        raise UnsupportedMediaError("zip archive that is not a DOCX document")
    text = decode_text(data)
    head = text[:4096].lstrip()
    if head.startswith(("{", "[")):
        structured = _sniff_json(text, hint)
        if structured:
            return structured, text
    if _HTML_DOCUMENT.search(head) or (head.startswith("<") and _HTML_BLOCK.search(head)):
        return "html", text
    hinted = _KIND_BY_SUFFIX.get(hint)
    if hinted in ("markdown", "html"):
        return hinted, text
    return "text", text


def _sniff_json(text: str, hint: str) -> Kind | None:
    if hint == ".jsonl":
        return "jsonl"
    try:
        json.loads(text)
        return "json"
    except ValueError:
        pass
    try:
        first = json.loads(text.lstrip().split("\n", 1)[0])
    except ValueError:
        first = None
    if isinstance(first, dict):
        return "jsonl"
    # A declared .json that does not parse gets the JSON parser's line-numbered error.
    return "json" if hint == ".json" else None


def _is_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False


# --- Decoding -------------------------------------------------------------------------

_BOMS = (
    # UTF-32 first: its little-endian BOM begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_CHARS = re.compile(r"[\x01-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_PREFERRED_LEGACY = frozenset({"cp1252", "latin_1"})


def decode_text(data: bytes) -> str:
    """Decode text of unknown encoding; raise `UnsupportedMediaError` for binary content."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise UnsupportedMediaError(f"{BINARY_REASON} (bad {encoding}: {exc.reason})") from exc
            break
    else:
        if b"\x00" in data:
            raise UnsupportedMediaError(BINARY_REASON)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_legacy(data)
    sample = text[:65536]
    if len(_CONTROL_CHARS.findall(sample)) > len(sample) * 0.05:
        raise UnsupportedMediaError(BINARY_REASON)
    if not text.strip():
        raise ParseError(EMPTY_REASON)
    return text


def _decode_legacy(data: bytes) -> str:
    # Without a BOM, UTF-16/32 would contain NULs, which were refused already; a guess
    # of them here is charset-normalizer misreading short text.
    matches = [m for m in charset_normalizer.from_bytes(data) if not m.encoding.startswith(("utf_16", "utf_32"))]
    if not matches:
        raise UnsupportedMediaError(BINARY_REASON)
    best = matches[0]
    # Western single-byte code pages tie on short text (cp1250 reads "è" as "č"); cp1252
    # is by far the likeliest of them, so a tied match that decodes as cp1252 wins.
    for match in matches:
        tied = match.chaos <= best.chaos and match.coherence >= best.coherence
        if tied and _PREFERRED_LEGACY & {match.encoding, *match.could_be_from_charset}:
            return str(match)
    return str(best)
