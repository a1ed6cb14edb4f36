"""Which chunks are still live, remembered per store change: a cached answer's check without a query.

Chunk ids are never reused, and a chunk dies only through a write that appends to the
store's change log. So a set of chunks found live at change `seq` is still live while the
newest change is `seq`: the check a cache hit needs becomes one read of the log's head.
Everything remembered is dropped at the first new change.
"""

from __future__ import annotations

from collections.abc import Hashable


class LiveMemo:
    """Live chunk sets by (scope, ids), valid for one change-log position; bounded in entries."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._seq = -1
        self._known: dict[Hashable, frozenset[int]] = {}

    def get(self, seq: int, key: Hashable) -> frozenset[int] | None:
        if seq != self._seq:
            return None
        return self._known.get(key)

    def put(self, seq: int, key: Hashable, live: frozenset[int]) -> None:
        if seq != self._seq:
            if seq < self._seq:
                return  # read at an older state than what is remembered: not worth keeping
            self._known.clear()
            self._seq = seq
        if len(self._known) >= self.max_entries:
            self._known.clear()
        self._known[key] = live

    def __len__(self) -> int:
        return len(self._known)
