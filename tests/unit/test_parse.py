"""File parsing against real files built in each test: PDF, DOCX, HTML, Markdown, JSON(L), text."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import docx
import pytest
from reportlab.pdfgen import canvas

from ragserve.errors import InvalidInputError, ParseError, PayloadTooLargeError, UnsupportedMediaError
from ragserve.ingest.parse import (
    SUPPORTED_SUFFIXES,
    ParseFailure,
    iter_files,
    parse_bytes,
    parse_file,
    parse_paths,
    source_name,
)
from ragserve.types import ParsedDocument

SCIFACT_CORPUS = Path("/work/shared/data/scifact/corpus.jsonl")


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def make_pdf(pages: list[str], *, title: str | None = None, encrypt: str | None = None) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, encrypt=encrypt)
    if title:
        pdf.setTitle(title)
    for text in pages:
        if text:
            pdf.drawString(72, 720, text)
        else:
            pdf.rect(72, 600, 200, 100, fill=1)  # ink, but no text: what a scan looks like
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly Report", level=0)
    document.add_paragraph("Opening remarks before any heading.")
    document.add_heading("Results", level=1)
    document.add_paragraph("Revenue grew in every region.")
    document.add_heading("Europe", level=2)
    document.add_paragraph("Germany led the growth.")
    table = document.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("Country", "Revenue"), ("Germany", "42")], strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_heading("Outlook", level=1)
    document.add_paragraph("Stable.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def only(documents: list[ParsedDocument]) -> ParsedDocument:
    assert len(documents) == 1
    return documents[0]


# --- plain text and encodings -------------------------------------------------------


def test_text_normalizes_newlines_and_blank_runs(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", b"first line  \r\nsecond\r\n\r\n\r\n\r\n\r\nthird para\n")
    document = only(parse_file(path))
    assert document.text == "first line\nsecond\n\nthird para"
    assert document.title is None
    assert document.id is None


def test_text_utf8_bom_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.txt", "hello wörld".encode("utf-8-sig"))
    assert only(parse_file(path)).text == "hello wörld"


def test_text_utf16_with_bom(tmp_path: Path) -> None:
    path = write(tmp_path / "wide.txt", "Grüße\r\naus München".encode("utf-16"))
    assert only(parse_file(path)).text == "Grüße\naus München"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Grüße aus München, schöne Straße.", "latin-1"),
        ("Café crème brûlée, naïve façade — résumé “quoted”.", "cp1252"),
        ("Café", "latin-1"),
    ],
)
def test_text_legacy_western_encodings(tmp_path: Path, text: str, encoding: str) -> None:
    path = write(tmp_path / "legacy.txt", text.encode(encoding))
    assert only(parse_file(path)).text == text


# --- markdown -----------------------------------------------------------------------

MARKDOWN = """\
---
title: "Install Guide"
tags: [setup]
---
Intro paragraph.

# Install

Pick a method.

## From source

Clone the repo.

```bash
# not a heading, a shell comment
make
```

### Build flags ###

Use -O2.

## From PyPI

pip install it.

# Usage

Run it.
"""


def test_markdown_front_matter_and_heading_paths(tmp_path: Path) -> None:
    document = only(parse_file(write(tmp_path / "guide.md", MARKDOWN)))
    assert document.title == "Install Guide"
    by_path = {section.headings: section.text for section in document.sections}
    assert list(by_path) == [
        (),
        ("Install",),
        ("Install", "From source"),
        ("Install", "From source", "Build flags"),
        ("Install", "From PyPI"),
        ("Usage",),
    ]
    assert by_path[()] == "Intro paragraph."
    assert by_path[("Install", "From source")].startswith("Clone the repo.")
    assert "# not a heading, a shell comment" in by_path[("Install", "From source")]
    assert by_path[("Install", "From source", "Build flags")] == "Use -O2."
    assert "tags:" not in document.text
    assert "## " not in document.text


def test_markdown_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    path = write(tmp_path / "readme.markdown", "Preface.\n\n## Minor\n\ntext\n\n# Main Title\n\nbody\n")
    document = only(parse_file(path))
    assert document.title == "Main Title"
    assert [s.headings for s in document.sections] == [(), ("Minor",), ("Main Title",)]


# --- HTML ---------------------------------------------------------------------------

HTML = """\
<!DOCTYPE html>
<html><head><title>Widget Manual</title><style>p { color: red }</style></head>
<body>
<nav><a href="/">Home</a> <a href="/about">About navigation link</a></nav>
<script>var tracking = "SECRET-TRACKER";</script>
<h1>Widgets</h1>
<p>Widgets are
   small.</p>
<h2>Setup</h2>
<ul><li>Unpack the box.</li><li>Plug it in.</li></ul>
<h3>Wiring</h3>
<p>Red to <b>red</b>.<br>Black to black.</p>
<h2>Care</h2>
<p>Keep dry.</p>
<pre>if wet:
    dry()</pre>
<footer>Copyright footer text</footer>
</body></html>
"""


def test_html_drops_noise_and_splits_by_headings(tmp_path: Path) -> None:
    document = only(parse_file(write(tmp_path / "manual.html", HTML)))
    assert document.title == "Widget Manual"
    text = document.text
    for noise in ("SECRET-TRACKER", "color: red", "navigation link", "Copyright footer"):
        assert noise not in text
    sections = {section.headings: section.text for section in document.sections}
    assert sections == {
        ("Widgets",): "Widgets are small.",
        ("Widgets", "Setup"): "Unpack the box.\n\nPlug it in.",
        ("Widgets", "Setup", "Wiring"): "Red to red.\nBlack to black.",
        ("Widgets", "Care"): "Keep dry.\n\nif wet:\n    dry()",
    }


def test_html_title_falls_back_to_h1(tmp_path: Path) -> None:
    path = write(tmp_path / "page.htm", "<html><body><h1>Only Heading</h1><p>Body.</p></body></html>")
    assert only(parse_file(path)).title == "Only Heading"


# --- PDF ----------------------------------------------------------------------------


def test_pdf_one_section_per_page_with_title(tmp_path: Path) -> None:
    data = make_pdf(["Alpha page text.", "Beta page text."], title="Two Pages")
    document = only(parse_file(write(tmp_path / "doc.pdf", data)))
    assert document.title == "Two Pages"
    assert [(s.page, s.text) for s in document.sections] == [
        (1, "Alpha page text."),
        (2, "Beta page text."),
    ]


def test_pdf_without_text_is_reported_as_scanned(tmp_path: Path) -> None:
    path = write(tmp_path / "scan.pdf", make_pdf(["", ""]))
    with pytest.raises(ParseError, match=r"no extractable text \(scanned PDF\?\)"):
        parse_file(path)


def test_pdf_encrypted_and_corrupt(tmp_path: Path) -> None:
    locked = write(tmp_path / "locked.pdf", make_pdf(["Secret."], encrypt="hunter2"))
    with pytest.raises(ParseError, match="encrypted PDF"):
        parse_file(locked)
    broken = write(tmp_path / "broken.pdf", b"%PDF-1.4\nthis is not really a pdf\n")
    with pytest.raises(ParseError, match="unreadable PDF"):
        parse_file(broken)


# --- DOCX ---------------------------------------------------------------------------


def test_docx_headings_title_and_table(tmp_path: Path) -> None:
    document = only(parse_file(write(tmp_path / "report.docx", make_docx())))
    assert document.title == "Quarterly Report"
    assert [(s.headings, s.text) for s in document.sections] == [
        ((), "Opening remarks before any heading."),
        (("Results",), "Revenue grew in every region."),
        (("Results", "Europe"), "Germany led the growth.\n\nCountry | Revenue\n\nGermany | 42"),
        (("Outlook",), "Stable."),
    ]


# --- JSON and JSONL -----------------------------------------------------------------


def test_json_list_of_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [
        {"_id": 7, "title": "Seven", "text": "seven text", "lang": "en", "metadata": {"year": 2020}},
        {"content": "no id here", "tags": ["dropped"], "score": 0.5},
        {"id": "b", "body": "from body", "lang": "de", "metadata": {"lang": "fr"}},
    ]
    documents = parse_file(write(tmp_path / "data" / "docs.json", json.dumps(rows)))
    assert [(d.id, d.title, d.text, d.source) for d in documents] == [
        ("7", "Seven", "seven text", "data/docs.json"),
        ("data/docs.json#1", None, "no id here", "data/docs.json"),
        ("b", None, "from body", "data/docs.json"),
    ]
    assert documents[0].metadata == {"lang": "en", "year": 2020}
    assert documents[1].metadata == {"score": 0.5}
    assert documents[2].metadata == {"lang": "fr"}


def test_json_single_object_and_missing_text(tmp_path: Path) -> None:
    document = only(parse_file(write(tmp_path / "one.json", '{"text": "just one", "title": "T"}')))
    assert (document.id, document.title, document.text) == (None, "T", "just one")
    bad = write(tmp_path / "bad.json", '[{"text": "ok"}, {"text": "ok"}, {"summary": "no text"}]')
    with pytest.raises(ParseError, match="object at index 2 has no text field"):
        parse_file(bad)


def test_jsonl_beir_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = [
        json.dumps({"_id": "d1", "title": "First", "text": "Alpha.", "metadata": {"url": "u1"}}),
        "",
        json.dumps({"_id": "d2", "title": "", "text": "Beta."}),
        json.dumps({"text": "No id."}),
    ]
    documents = parse_file(write(tmp_path / "corpus.jsonl", "\n".join(lines) + "\n"))
    assert [(d.id, d.title, d.text, d.metadata) for d in documents] == [
        ("d1", "First", "Alpha.", {"url": "u1"}),
        ("d2", None, "Beta.", {}),
        ("corpus.jsonl#4", None, "No id.", {}),
    ]
    assert {d.source for d in documents} == {"corpus.jsonl"}


def test_jsonl_malformed_line_fails_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    failures = list(parse_paths([path]))
    assert len(failures) == 1
    assert isinstance(failures[0], ParseFailure)
    assert failures[0].reason.startswith("invalid JSON at line 3: ")


@pytest.mark.skipif(not SCIFACT_CORPUS.exists(), reason="BEIR SciFact corpus not present")
def test_jsonl_scifact_corpus_is_fast() -> None:
    started = time.perf_counter()
    documents = parse_file(SCIFACT_CORPUS)
    elapsed = time.perf_counter() - started
    assert len(documents) == 5183
    assert documents[0].id == "4983"
    assert documents[0].title and documents[0].title.startswith("Microstructural development")
    assert elapsed < 1.0


# --- failures in a batch ------------------------------------------------------------


def test_batch_reports_each_failure_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a_empty.txt", "  \n\n \t")
    write(tmp_path / "b_binary.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    write(tmp_path / "c_good.md", "# Fine\n\nworks")
    write(tmp_path / "d_program.exe", "MZ not really")
    write(tmp_path / "e_zero.json", b"")
    results = list(parse_paths([tmp_path]))
    assert [(type(r).__name__, r.source) for r in results] == [
        ("ParseFailure", "a_empty.txt"),
        ("ParseFailure", "b_binary.txt"),
        ("ParsedDocument", "c_good.md"),
        ("ParseFailure", "d_program.exe"),
        ("ParseFailure", "e_zero.json"),
    ]
    reasons = [r.reason for r in results if isinstance(r, ParseFailure)]
    assert reasons[:2] == ["empty file", "binary content, not text"]
    assert reasons[2].startswith("unsupported file type '.exe' (supported: .docx, .htm, .html, ")
    assert reasons[3] == "empty file"


def test_unsupported_suffix_raises_before_reading(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaError, match=r"'\.exe'") as caught:
        parse_file(tmp_path / "does-not-exist.exe")
    assert all(suffix in caught.value.message for suffix in SUPPORTED_SUFFIXES)


def test_size_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "big.txt", "x" * 200)
    with pytest.raises(PayloadTooLargeError, match="limit 100"):
        parse_file(path, max_bytes=100)
    [failure] = list(parse_paths([path], max_bytes=100))
    assert isinstance(failure, ParseFailure)
    assert "too large" in failure.reason
    with pytest.raises(PayloadTooLargeError):
        parse_bytes(b"x" * 200, "big.txt", max_bytes=100)


# --- walking paths ------------------------------------------------------------------


def test_iter_files_sorted_recursive_skipping_hidden(tmp_path: Path) -> None:
    for name in ["b.txt", "a.md", "sub/z.txt", "sub/deeper/y.txt", ".hidden.txt", ".git/config", "sub/.env"]:
        write(tmp_path / name, "x")
    direct = write(tmp_path / "elsewhere" / ".explicit.txt", "x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_files([tmp_path, direct, tmp_path / "a.md"])]
    assert found == [
        "a.md",
        "b.txt",
        "sub/z.txt",
        "sub/deeper/y.txt",
        "elsewhere/.explicit.txt",  # hidden, but named directly; a.md is not repeated
    ]


def test_iter_files_validates_every_path_first(tmp_path: Path) -> None:
    good = write(tmp_path / "good.txt", "x")
    files = iter_files([good, tmp_path / "missing.txt"])
    with pytest.raises(InvalidInputError, match=r"path does not exist: .*missing\.txt"):
        next(files)


def test_source_name_relative_inside_cwd_else_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside = tmp_path / "work"
    inside.mkdir()
    monkeypatch.chdir(inside)
    assert source_name(Path("docs/a.md")) == "docs/a.md"
    assert source_name(inside / "docs" / "b.md") == "docs/b.md"
    assert source_name(tmp_path / "other" / "c.md") == (tmp_path / "other" / "c.md").as_posix()


# --- uploads: sniffing --------------------------------------------------------------


def test_parse_bytes_sniffs_pdf_named_txt() -> None:
    document = only(parse_bytes(make_pdf(["Page one.", "Page two."], title="Sniffed"), "upload.txt"))
    assert document.title == "Sniffed"
    assert [s.page for s in document.sections] == [1, 2]
    assert document.source == "upload.txt"


def test_parse_bytes_sniffs_docx_html_and_json() -> None:
    assert only(parse_bytes(make_docx(), "upload.bin")).title == "Quarterly Report"
    html = only(parse_bytes(HTML.encode(), "page.txt"))
    assert html.title == "Widget Manual"
    assert "SECRET-TRACKER" not in html.text
    rows = parse_bytes(b'{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"}\n', "rows.txt")
    assert [(d.id, d.text) for d in rows] == [("1", "a"), ("2", "b")]
    obj = only(parse_bytes(b'{"text": "whole", "id": 3}', "data"))
    assert (obj.id, obj.text) == ("3", "whole")


def test_parse_bytes_uses_suffix_only_as_a_hint() -> None:
    markdown = only(parse_bytes(b"# Heading\n\nbody", "notes.md"))
    assert markdown.sections[0].headings == ("Heading",)
    plain = only(parse_bytes(b"# Heading\n\nbody", "notes.txt"))
    assert plain.text == "# Heading\n\nbody"
    assert plain.sections[0].headings == ()
    text_named_json = only(parse_bytes(b"plain words", "data.json"))
    assert text_named_json.text == "plain words"


def test_parse_bytes_refuses_binary_and_foreign_zip() -> None:
    executable = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(range(256)) * 4
    with pytest.raises(UnsupportedMediaError, match="binary content, not text"):
        parse_bytes(executable, "setup.exe")
    with pytest.raises(UnsupportedMediaError, match="binary content, not text"):
        parse_bytes(bytes(range(128, 256)) * 8, "noise.txt")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "hi")
    with pytest.raises(UnsupportedMediaError, match="not a DOCX"):
        parse_bytes(archive.getvalue(), "report.docx")
    with pytest.raises(ParseError, match="empty file"):
        parse_bytes(b" \n ", "blank.txt")
