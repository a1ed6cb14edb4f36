"""One parser per file format, each turning decoded content into `ParsedDocument`s.

Text formats take a `str` (decoding and sniffing live in `ingest.parse`); PDF and
DOCX take the raw bytes. Every parser raises `ParseError` with a reason a person can
act on; third-party exceptions are translated here, at the seam.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import docx
from bs4 import BeautifulSoup
from bs4.element import Tag
from docx.table import Table
from pypdf import PdfReader

from ragserve.errors import ParseError
from ragserve.types import Metadata, ParsedDocument, Section

_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUN = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """`\\n` newlines, no NULs, no trailing spaces, at most one blank line in a row."""
    # The membership tests are memchr-fast; they keep large clean inputs (JSONL rows) cheap.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "\f" in text or "\v" in text:
        text = text.replace("\f", "\n").replace("\v", "\n")
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class SectionBuilder:
    """Collects paragraphs under a heading path that headings push and pop.

    Headings live in `Section.headings` only, not in the body: the chunker puts the
    heading path in front of each chunk for embedding and keyword search, and an answer
    quoting sentences should never quote a bare heading.
    """

    def __init__(self) -> None:
        self._sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._parts: list[str] = []

    def heading(self, level: int, text: str) -> None:
        self._flush()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        if text:
            self._path.append((level, text))

    def add(self, text: str) -> None:
        if text.strip():
            self._parts.append(text)

    def finish(self) -> list[Section]:
        self._flush()
        return self._sections

    def _flush(self) -> None:
        body = normalize_text("\n\n".join(self._parts))
        if body:
            self._sections.append(Section(body, headings=tuple(text for _, text in self._path)))
        self._parts = []


def _require_text(sections: list[Section]) -> list[Section]:
    if not sections:
        raise ParseError("no text content")
    return sections


def parse_text(text: str, source: str) -> list[ParsedDocument]:
    body = normalize_text(text)
    return [ParsedDocument(sections=_require_text([Section(body)] if body else []), source=source)]


# --- Markdown -------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def parse_markdown(text: str, source: str) -> list[ParsedDocument]:
    text = normalize_text(text)
    title: str | None = None
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        found = _FRONT_TITLE.search(front.group(1) or "")
        title = found.group(1).strip("\"'").strip() or None if found else None

    builder = SectionBuilder()
    lines: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        opener = _FENCE.match(line)
        if fence is not None:
            # A fence closes only on the same character, at least as long, with nothing after it.
            closer = line.strip()
            if closer.startswith(fence) and not closer.strip(fence[0]):
                fence = None
        elif opener:
            fence = opener.group(1)
        elif heading := _ATX_HEADING.match(line):
            builder.add("\n".join(lines))
            lines = []
            level, heading_text = len(heading.group(1)), (heading.group(2) or "").strip()
            if title is None and level == 1 and heading_text:
                title = heading_text
            builder.heading(level, heading_text)
            continue
        lines.append(line)
    builder.add("\n".join(lines))
    return [ParsedDocument(sections=_require_text(builder.finish()), source=source, title=title)]


# --- HTML -----------------------------------------------------------------------------

_NOISE_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "head", "nav", "footer", "aside")
_BLOCK_TAGS = (
    "p", "div", "li", "dt", "dd", "pre", "blockquote", "table", "tr", "section", "article",
    "main", "header", "ul", "ol", "dl", "figure", "figcaption", "caption", "address", "hr",
)  # fmt: skip
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Private-use sentinels: they survive get_text() and cannot occur in decoded prose.
_PARA, _LINE, _HEAD, _SEP, _SPACE = "\ue000", "\ue001", "\ue002", "\ue003", "\ue004"
_SPACES = re.compile(r"\s+")


def parse_html(text: str, source: str) -> list[ParsedDocument]:
    soup = BeautifulSoup(text, "lxml")
    # Only the head's <title>: an inline <svg> carries <title> elements of its own.
    title_tag = soup.head.find("title") if soup.head else None
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    for noise in soup.find_all(_NOISE_TAGS):
        noise.decompose()
    for br in soup.find_all("br"):
        br.replace_with(_LINE)
    for pre in soup.find_all("pre"):
        for string in pre.find_all(string=True):
            string.replace_with(str(string).replace("\n", _LINE).replace(" ", _SPACE))
    for block in soup.find_all(_BLOCK_TAGS):
        block.insert_before(_PARA)
        block.insert_after(_PARA)
    for cell in soup.find_all(("td", "th")):
        cell.insert_after(" | ")
    for heading in soup.find_all(_HEADING_TAGS):
        if isinstance(heading, Tag):
            heading_text = _SPACES.sub(" ", heading.get_text(" ")).strip()
            if not title and heading.name == "h1":
                title = heading_text
            heading.replace_with(f"{_HEAD}{heading.name[1]}{_SEP}{heading_text}{_HEAD}")

    root = soup.body or soup
    builder = SectionBuilder()
    # split() alternates body text and "level<SEP>heading" markers.
    for index, piece in enumerate(root.get_text().split(_HEAD)):
        if index % 2:
            level, _, heading_text = piece.partition(_SEP)
            builder.heading(int(level), heading_text)
        else:
            builder.add("\n\n".join(_paragraphs(piece)))
    return [ParsedDocument(sections=_require_text(builder.finish()), source=source, title=title or None)]


def _paragraphs(raw: str) -> list[str]:
    # Source whitespace in HTML is insignificant; only our sentinels mark real breaks and <pre> spaces.
    paragraphs = []
    for chunk in raw.split(_PARA):
        lines = (_SPACES.sub(" ", line).strip(" |").replace(_SPACE, " ") for line in chunk.split(_LINE))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return paragraphs


# --- PDF ------------------------------------------------------------------------------


def parse_pdf(data: bytes, source: str) -> list[ParsedDocument]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("encrypted PDF (a password is required)")
        metadata = reader.metadata
        title = (metadata.title if metadata else None) or ""
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            page_text = normalize_text(page.extract_text())
            if page_text:
                sections.append(Section(page_text, page=number))
    except ParseError:
        raise
    except Exception as exc:  # pypdf raises many unrelated types on damaged files
        raise ParseError(f"unreadable PDF: {_describe(exc)}") from exc
    if not sections:
        raise ParseError("no extractable text (scanned PDF?)")
    return [ParsedDocument(sections=sections, source=source, title=str(title).strip() or None)]


# --- DOCX -----------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"^Heading ([1-9])$")


def parse_docx(data: bytes, source: str) -> list[ParsedDocument]:
    try:
        document = docx.Document(io.BytesIO(data))
        title = ""
        builder = SectionBuilder()
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in _table_rows(block):
                    builder.add(row)
                continue
            style = block.style.name if block.style is not None else ""
            text = block.text.strip()
            if style == "Title":
                title = title or text
            elif heading := _HEADING_STYLE.match(style or ""):
                builder.heading(int(heading.group(1)), text)
            else:
                builder.add(text)
        sections = builder.finish()
        # The visible Title paragraph beats core properties, which templates often leave stale.
        title = title or document.core_properties.title or ""
    except Exception as exc:  # python-docx surfaces zip, XML and key errors alike
        raise ParseError(f"unreadable DOCX: {_describe(exc)}") from exc
    return [ParsedDocument(sections=_require_text(sections), source=source, title=title.strip() or None)]


def _table_rows(table: Table) -> list[str]:
    # One paragraph per row keeps a row's cells together, which is what a reader matches on.
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):  # merged cells repeat their text
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return rows


# --- JSON and JSON Lines --------------------------------------------------------------

_TEXT_KEYS = ("text", "content", "body")
_ID_KEYS = ("_id", "id")
_RESERVED_KEYS = frozenset({*_TEXT_KEYS, *_ID_KEYS, "title", "metadata"})


def parse_json(text: str, source: str) -> list[ParsedDocument]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if isinstance(value, dict):
        return [_row_document(value, source, None, "the JSON object")]
    if not isinstance(value, list) or not value:
        kind = "an empty list" if isinstance(value, list) else type(value).__name__
        raise ParseError(f"JSON must be an object or a list of objects, got {kind}")
    documents = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ParseError(f"item at index {index} is not an object")
        documents.append(_row_document(item, source, f"{source}#{index}", f"object at index {index}"))
    return documents


def parse_jsonl(text: str, source: str) -> list[ParsedDocument]:
    documents = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(f"invalid JSON at line {number}: {exc.msg}") from exc
        if not isinstance(row, dict):
            raise ParseError(f"line {number} is not a JSON object")
        documents.append(_row_document(row, source, f"{source}#{number}", f"line {number}"))
    if not documents:
        raise ParseError("empty file")
    return documents


def _row_document(row: dict[str, Any], source: str, default_id: str | None, where: str) -> ParsedDocument:
    text = next((row[key] for key in _TEXT_KEYS if isinstance(row.get(key), str)), None)
    if text is None:
        raise ParseError(f"{where} has no text field (expected a string in one of: {', '.join(_TEXT_KEYS)})")
    raw_id = next((row[key] for key in _ID_KEYS if row.get(key) not in (None, "")), None)
    raw_title = row.get("title")
    title = str(raw_title).strip() or None if _is_scalar(raw_title) else None
    metadata: Metadata = {k: v for k, v in row.items() if k not in _RESERVED_KEYS and _is_scalar(v)}
    nested = row.get("metadata")
    if isinstance(nested, dict):
        metadata.update(nested)  # explicit metadata wins over loose top-level fields
    body = normalize_text(text)
    return ParsedDocument(
        sections=[Section(body)] if body else [],
        source=source,
        title=title,
        id=str(raw_id) if raw_id is not None else default_id,
        metadata=metadata,
    )


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)
