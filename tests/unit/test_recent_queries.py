"""Recent questions: counted per process, merged across processes, recent counts weigh more."""

from __future__ import annotations

from pathlib import Path

from ragserve.cache.recent import RecentQueries
from ragserve.types import Scope

DOCS = Scope("acme", "docs")


def test_counts_survive_a_restart_and_merge_across_processes(tmp_path: Path) -> None:
    first, second = RecentQueries(tmp_path), RecentQueries(tmp_path)
    for _ in range(3):
        first.record(DOCS, "which port?")
    first.record(DOCS, "where is data kept?")
    second.record(Scope("globex", "docs"), "which port?")
    first.save()
    second.save()
    top = RecentQueries(tmp_path).top(10)
    assert top[0] == (DOCS, "which port?")
    assert set(top) == {(DOCS, "which port?"), (DOCS, "where is data kept?"), (Scope("globex", "docs"), "which port?")}
    assert RecentQueries(tmp_path).top(1) == [(DOCS, "which port?")]


def test_older_counts_fade_against_newer_ones(tmp_path: Path) -> None:
    old = RecentQueries(tmp_path)
    for _ in range(3):
        old.record(DOCS, "old favourite")
    old.save()
    for _ in range(4):  # three later saves halve the old count each time: 3 -> 0.375
        new = RecentQueries(tmp_path)
        new.record(DOCS, "new favourite")
        new.save()
    assert RecentQueries(tmp_path).top(1) == [(DOCS, "new favourite")]


def test_an_unreadable_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "recent_queries.json").write_text("{not json")
    recent = RecentQueries(tmp_path)
    assert recent.top(5) == []
    recent.record(DOCS, "q")
    recent.save()
    assert RecentQueries(tmp_path).top(5) == [(DOCS, "q")]
