"""Upload checks as pure functions: filename sanitising, formats sniffed from content, rejections."""

from __future__ import annotations

import io
import zipfile

import docx
import pytest
from reportlab.pdfgen import canvas

from ragserve.errors import ParseError, PayloadTooLargeError, UnsupportedMediaError
from ragserve.ingest.upload import (
    FALLBACK_FILENAME,
    MAX_FILENAME_CHARS,
    SUPPORTED_FORMATS,
    FileError,
    StagedFile,
    check_upload,
    rejection,
    sanitize_filename,
)

LIMIT = 1 << 20


def make_pdf(text: str) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.drawString(72, 720, text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_docx(text: str) -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def staged(data: bytes, filename: str) -> StagedFile:
    checked = check_upload(data, filename, max_bytes=LIMIT)
    assert isinstance(checked, StagedFile), checked
    return checked


def failed(data: bytes, filename: str, *, max_bytes: int = LIMIT) -> FileError:
    checked = check_upload(data, filename, max_bytes=max_bytes)
    assert isinstance(checked, FileError), checked
    return checked


# --- filenames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\system32\\evil.txt", "evil.txt"),
        ("C:\\Users\\me\\My Documents\\notes.md", "notes.md"),
        ("/absolute/path/to/file.txt", "file.txt"),
        ("evil\x00name.txt", "evilname.txt"),
        ("line\r\nbreak\t.txt", "linebreak.txt"),
        ("bidi\u202etxt.exe", "biditxt.exe"),
        ("a..b...c.txt", "a.b.c.txt"),
        ("..", FALLBACK_FILENAME),
        ("....", FALLBACK_FILENAME),
        (".hidden", "hidden"),
        ("trailing. . ", "trailing"),
        ("  many   spaces  here.txt ", "many spaces here.txt"),
        ('re<po>rt:"x"|y?*.txt', "re_po_rt__x__y__.txt"),
        ("Über résumé.md", "Über résumé.md"),
        ("cafe\u0301.txt", "café.txt"),
        ("", FALLBACK_FILENAME),
        (None, FALLBACK_FILENAME),
        ("\x00\x01\x02", FALLBACK_FILENAME),
    ],
)
def test_sanitize_filename(raw: str | None, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_sanitize_filename_limits_length_and_keeps_the_suffix() -> None:
    name = sanitize_filename("x" * 300 + ".txt")
    assert len(name) == MAX_FILENAME_CHARS
    assert name.endswith("x.txt")
    no_suffix = sanitize_filename("y" * 300)
    assert no_suffix == "y" * MAX_FILENAME_CHARS
    long_suffix = sanitize_filename("z." + "s" * 300)
    assert len(long_suffix) == MAX_FILENAME_CHARS
    assert sanitize_filename("a" * 300 + ".txt", max_chars=10) == "aaaaaa.txt"


def test_sanitized_names_are_stable_and_idempotent() -> None:
    for raw in ("../../etc/passwd", "x" * 300 + ".pdf", "evil\x00name.txt", "..\\a..b"):
        once = sanitize_filename(raw)
        assert sanitize_filename(once) == once
        assert "/" not in once and "\\" not in once and "\x00" not in once and ".." not in once


# --- formats by content ---------------------------------------------------------------


def test_formats_are_sniffed_from_content_not_the_name() -> None:
    assert staged(make_pdf("Hello PDF"), "invoice.txt").format == "pdf"
    assert staged(make_docx("Hello DOCX"), "memo.pdf").format == "docx"
    assert staged(b"<!doctype html><html><body><p>Hi</p></body></html>", "page.txt").format == "html"
    assert staged(b'{"text": "a JSON document"}', "data.txt").format == "json"
    assert staged(b'{"text": "row one"}\n{"text": "row two"}\n', "rows.txt").format == "jsonl"
    assert staged(b"plain words, nothing more", "picture.png").format == "text"


def test_name_breaks_ties_between_text_formats() -> None:
    assert staged(b"# Title\n\nBody text.", "notes.md").format == "markdown"
    assert staged(b"# Title\n\nBody text.", "notes.txt").format == "text"
    assert staged("Grüße aus Köln".encode("cp1252"), "legacy.txt").format == "text"


def test_staged_file_keeps_size_and_bytes() -> None:
    data = b"some text"
    file = staged(data, "a.txt")
    assert (file.filename, file.size, file.read()) == ("a.txt", len(data), data)


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "setup.txt"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "photo.png"),
        (bytes(range(128, 256)) * 8, "noise.md"),
    ],
)
def test_binary_content_is_unsupported_naming_the_file_and_the_formats(data: bytes, filename: str) -> None:
    error = failed(data, filename)
    assert error.filename == filename
    assert error.type == UnsupportedMediaError.type
    assert f"'{filename}'" in error.message
    assert SUPPORTED_FORMATS in error.message


def test_zip_that_is_not_docx_is_unsupported() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("hello.txt", "hi")
    error = failed(archive.getvalue(), "report.docx")
    assert error.type == UnsupportedMediaError.type
    assert "zip archive" in error.message


def test_empty_file_is_a_parse_error() -> None:
    error = failed(b"  \n\t ", "blank.txt")
    assert error.type == ParseError.type
    assert "'blank.txt'" in error.message and "empty" in error.message


def test_file_over_the_limit_names_the_file_and_the_limit() -> None:
    error = failed(b"x" * 2000, "big.txt", max_bytes=1024)
    assert error.type == PayloadTooLargeError.type
    assert "'big.txt'" in error.message
    assert "2,000 bytes" in error.message and "1,024" in error.message


# --- when nothing could be ingested ---------------------------------------------------


def test_rejection_status_follows_what_failed() -> None:
    big = failed(b"x" * 2000, "big.txt", max_bytes=1024)
    binary = failed(bytes(range(128, 256)) * 8, "noise.bin")
    empty = failed(b" ", "blank.txt")

    assert isinstance(rejection([big, big]), PayloadTooLargeError)
    assert isinstance(rejection([binary]), UnsupportedMediaError)
    assert isinstance(rejection([empty]), ParseError)
    mixed = rejection([big, binary, empty])
    assert isinstance(mixed, ParseError)
    for name in ("big.txt", "noise.bin", "blank.txt"):
        assert f"'{name}'" in mixed.message
