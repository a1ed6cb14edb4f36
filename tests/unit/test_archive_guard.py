"""The zip archive guard: bombs, lying headers, traversal, encryption, and real DOCX files that pass."""

from __future__ import annotations

import io
import struct
import zipfile

import docx
import pytest

from ragserve.errors import InvalidInputError, ParseError, UnsupportedMediaError
from ragserve.ingest.archive import RATIO_CHECK_MIN_BYTES, check_archive
from ragserve.ingest.parse import parse_bytes

MiB = 1 << 20
LIMIT = 200 * MiB
BOMB_BYTES = 300 * MiB


def make_docx(text: str = "Narwhals have one long tusk.") -> bytes:
    document = docx.Document()
    document.add_heading("Field Notes", level=1)
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def add_zeros(base: bytes, name: str, size: int) -> bytes:
    """`base` plus an entry of `size` zero bytes, deflated in 1 MiB steps (never all in memory)."""
    buffer = io.BytesIO(base)
    zeros = memoryview(bytes(MiB))
    with (
        zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open(name, "w") as entry,
    ):
        for start in range(0, size, MiB):
            entry.write(zeros[: min(MiB, size - start)])
    return buffer.getvalue()


def patch_directory(data: bytes, name: str, offset: int, value: int, fmt: str) -> bytes:
    """Overwrite one field of `name`'s central-directory record: what zip readers believe."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (name_length,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46 : at + 46 + name_length] == name.encode():
            patched = bytearray(data)
            struct.pack_into(fmt, patched, at + offset, value)
            return bytes(patched)
        at = data.find(b"PK\x01\x02", at + 1)
    raise AssertionError(f"{name} is not in the archive")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A DOCX carrying 300 MiB of zeros in about a megabyte."""
    return add_zeros(make_docx(), "word/media/zeros.bin", BOMB_BYTES)


def test_a_normal_docx_passes_and_still_parses() -> None:
    data = make_docx()
    check_archive(data, max_total_bytes=LIMIT)
    [document] = parse_bytes(data, "notes.docx")
    assert document.title is None
    assert document.sections[0].headings == ("Field Notes",)
    assert document.text == "Narwhals have one long tusk."


def test_entries_under_a_mebibyte_may_compress_as_well_as_they_like() -> None:
    data = make_zip({"word/document.xml": b"<w:p/>" * (RATIO_CHECK_MIN_BYTES // 6)})
    [entry] = zipfile.ZipFile(io.BytesIO(data)).infolist()
    assert entry.file_size <= RATIO_CHECK_MIN_BYTES
    assert entry.file_size > 100 * entry.compress_size
    check_archive(data, max_total_bytes=LIMIT)


def test_a_bomb_is_refused_for_its_ratio(bomb: bytes) -> None:
    assert len(bomb) < 2 * MiB
    with pytest.raises(InvalidInputError, match=r"'word/media/zeros.bin' inflates [\d,]+ times .*limit 100"):
        check_archive(bomb, max_total_bytes=10 * BOMB_BYTES)


def test_a_bomb_is_refused_for_its_declared_total(bomb: bytes) -> None:
    with pytest.raises(InvalidInputError, match=r"declares [\d,]+ bytes uncompressed, over the limit of 209,715,200"):
        check_archive(bomb, max_total_bytes=LIMIT, max_ratio=float("inf"))


def test_a_bomb_is_refused_before_python_docx_sees_it(bomb: bytes) -> None:
    with pytest.raises(InvalidInputError, match="zip bomb"):
        parse_bytes(bomb, "report.docx")


def test_uploads_may_inflate_to_ten_times_their_size_limit() -> None:
    # Entries under a mebibyte escape the ratio check; their total does not escape the cap.
    data = make_docx()
    for number in range(18):
        data = add_zeros(data, f"word/media/part{number}.bin", MiB - 1)
    assert len(data) < MiB
    [document] = parse_bytes(data, "report.docx", max_bytes=2 * MiB)  # 20 MiB allowed: parses
    assert document.text == "Narwhals have one long tusk."
    with pytest.raises(InvalidInputError, match="over the limit of 10,485,760"):
        parse_bytes(data, "report.docx", max_bytes=MiB)


def test_a_header_that_understates_an_entry_is_caught_when_inflated(bomb: bytes) -> None:
    # Uncompressed size at offset 24 of the record: claim 1,000 bytes for 300 MiB.
    lying = patch_directory(bomb, "word/media/zeros.bin", 24, 1000, "<I")
    with pytest.raises(InvalidInputError, match=r"'word/media/zeros\.bin' does not match its header"):
        check_archive(lying, max_total_bytes=LIMIT)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "word/../../outside.xml", "..\\..\\windows\\win.ini", "/etc/passwd", "C:\\evil.dll"]
)
def test_entry_names_that_escape_the_archive_are_refused(name: str) -> None:
    data = make_zip({"word/document.xml": b"<w:document/>", name: b"x"})
    with pytest.raises(InvalidInputError, match="path traversal"):
        check_archive(data, max_total_bytes=LIMIT)


def test_names_with_dots_that_stay_inside_are_fine() -> None:
    check_archive(make_zip({"word/..media/a..b.xml": b"x", "./word/document.xml": b"y"}), max_total_bytes=LIMIT)


def test_too_many_entries_are_refused() -> None:
    data = make_zip({f"word/part{i}.xml": b"x" for i in range(11)})
    check_archive(data, max_total_bytes=LIMIT, max_entries=11)
    with pytest.raises(InvalidInputError, match="more than 10 entries"):
        check_archive(data, max_total_bytes=LIMIT, max_entries=10)


def test_encrypted_entries_are_refused() -> None:
    data = make_zip({"word/document.xml": b"<w:document/>"})
    encrypted = patch_directory(data, "word/document.xml", 8, 0x1, "<H")  # general purpose flag, bit 0
    with pytest.raises(UnsupportedMediaError, match="encrypted"):
        check_archive(encrypted, max_total_bytes=LIMIT)


def test_compression_methods_docx_never_uses_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("word/document.xml", b"<w:document/>")
    with pytest.raises(UnsupportedMediaError, match="compression method"):
        check_archive(buffer.getvalue(), max_total_bytes=LIMIT)


def test_bytes_that_are_not_a_zip_are_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unreadable zip archive"):
        check_archive(b"PK\x03\x04 but nothing after", max_total_bytes=LIMIT)
