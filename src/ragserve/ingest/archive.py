"""Zip archives checked before a parser inflates them: bombs, path traversal, encryption.

A DOCX upload is a zip archive, and python-docx inflates its parts in memory. A few
hundred kilobytes of zip can declare gigabytes of content, or millions of entries, and
entry names such as "../../etc/passwd" are a hazard for any code that ever extracts them.
`check_archive()` refuses such an archive before the parser sees it:

    check_archive(data, max_total_bytes=200 * 2**20)  # raises, or returns None when safe

It reads the central directory first (cheap, nothing inflated), then inflates every entry
in small chunks, discarding them, with a hard cap on the bytes produced. Declared sizes
are only claims: the standard zipfile module stops an entry at its declared size and then
fails its CRC check, so an entry whose header lies is reported here, with a clear reason,
instead of surfacing later from inside the parser; and the running count enforces the
cap whatever the zip reader does with a header that lies.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib

from ragserve.errors import InvalidInputError, ParseError, UnsupportedMediaError

RATIO_CHECK_MIN_BYTES = 1 << 20  # below this, a high ratio is harmless (XML compresses 20x or more)
_CHUNK_BYTES = 1 << 16
_CENTRAL_DIRECTORY_ENTRY = b"PK\x01\x02"
_ENCRYPTED_FLAG = 0x1
_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})  # all that OOXML allows
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_archive(data: bytes, *, max_total_bytes: int, max_ratio: float = 100.0, max_entries: int = 10_000) -> None:
    """Refuse a zip archive that is unsafe to inflate in memory or to extract.

    Raises `InvalidInputError` for more than `max_entries` entries, more than
    `max_total_bytes` once inflated (declared or actual), an entry over 1 MiB inflating
    more than `max_ratio` times its compressed size, an absolute or parent-relative entry
    name, or an entry whose content does not match its header; `UnsupportedMediaError`
    for encrypted entries or compression methods other than stored and deflate; and
    `ParseError` when `data` is not a readable zip archive at all.
    """
    # Every central-directory record starts with this signature, so counting it bounds the
    # entries before ZipFile builds an object for each: a small file can hold millions.
    if data.count(_CENTRAL_DIRECTORY_ENTRY) > max_entries:
        raise InvalidInputError(f"archive has more than {max_entries:,} entries")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ParseError(f"unreadable zip archive: {exc}") from exc
    with archive:
        entries = archive.infolist()
        for entry in entries:
            _check_entry(entry, max_ratio)
        declared = sum(entry.file_size for entry in entries)
        if declared > max_total_bytes:
            raise InvalidInputError(
                f"archive declares {declared:,} bytes uncompressed, over the limit of {max_total_bytes:,} (a zip bomb?)"
            )
        _inflate_all(archive, entries, max_total_bytes)


def _check_entry(entry: zipfile.ZipInfo, max_ratio: float) -> None:
    name = entry.filename
    if _escapes(name):
        raise InvalidInputError(f"archive entry name {name!r} points outside the archive (path traversal)")
    if entry.flag_bits & _ENCRYPTED_FLAG:
        raise UnsupportedMediaError(f"archive entry {name!r} is encrypted (a password is required)")
    if entry.compress_type not in _METHODS:
        raise UnsupportedMediaError(f"archive entry {name!r} uses an unsupported compression method")
    if entry.file_size > RATIO_CHECK_MIN_BYTES and entry.file_size > max_ratio * max(entry.compress_size, 1):
        ratio = entry.file_size / max(entry.compress_size, 1)
        raise InvalidInputError(
            f"archive entry {name!r} inflates {ratio:,.0f} times its compressed size "
            f"(limit {max_ratio:,.0f}; a zip bomb?)"
        )


def _escapes(name: str) -> bool:
    """Whether extracting `name` could write outside the target folder, on any OS."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or bool(_DRIVE.match(name)) or ".." in parts


def _inflate_all(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], max_total_bytes: int) -> None:
    budget = max_total_bytes
    for entry in entries:
        try:
            budget -= _inflate(archive, entry, budget)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InvalidInputError(
                f"archive entry {entry.filename!r} does not match its header (corrupt or tampered): {exc}"
            ) from exc


def _inflate(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, budget: int) -> int:
    """Inflate one entry in chunks, keeping none; the bytes it produced. Raises past `budget`."""
    produced = 0
    with archive.open(entry) as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            produced += len(chunk)
            if produced > budget:
                raise InvalidInputError("archive inflates to more than the limit allowed uncompressed (a zip bomb?)")
    return produced
