"""A file that takes too long to parse fails alone; the job goes on with the others."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ragserve.ingest import upload
from ragserve.ingest.upload import StagedFile, _parse_within


async def test_a_slow_file_fails_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = upload._parse

    def slow_for_one(file: StagedFile, max_bytes: int) -> object:
        if file.filename == "slow.md":
            time.sleep(0.5)
        return real(file, max_bytes)

    monkeypatch.setattr(upload, "_parse", slow_for_one)
    slow, fast = tmp_path / "slow.md", tmp_path / "fast.md"
    slow.write_text("# Slow\n\nA document that parses slowly.")
    fast.write_text("# Fast\n\nA document that parses at once.")
    failed = await _parse_within(StagedFile("slow.md", "markdown", 40, path=slow), 10_000, 0.1)
    assert isinstance(failed, upload.FileError) and "took longer than 0.1 s" in failed.message
    parsed = await _parse_within(StagedFile("fast.md", "markdown", 40, path=fast), 10_000, 0.1)
    assert isinstance(parsed, list) and parsed[0].title == "Fast"
