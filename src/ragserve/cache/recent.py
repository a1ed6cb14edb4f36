"""The questions asked most, remembered across restarts, so a new process can warm its caches.

Each process counts the questions it answered with the default parameters; at shutdown it
merges its counts into `<data_dir>/recent_queries.json` under an inter-process lock (older
counts halve at each merge, so "recent" wins over "once popular"). At start,
`RAGSERVE_CACHE_WARMUP_QUERIES=N` replays the N most asked ones through the normal query
path, which fills the caches before traffic arrives.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

from ragserve.store.locks import InterProcessLock
from ragserve.types import Scope

log = logging.getLogger(__name__)

FILE_NAME = "recent_queries.json"
KEEP = 1000  # questions remembered per file
DECAY = 0.5  # weight of the stored counts against this process's own at each merge


class RecentQueries:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._lock = InterProcessLock(data_dir / (FILE_NAME + ".lock"))
        self._counts: Counter[tuple[str, str, str]] = Counter()  # this process's, not yet saved

    def record(self, scope: Scope, query: str) -> None:
        self._counts[(scope.tenant, scope.collection, query)] += 1

    def top(self, n: int) -> list[tuple[Scope, str]]:
        """The `n` most asked questions, as stored (this process's unsaved counts not included)."""
        ranked = sorted(self._load().items(), key=lambda item: -item[1])[:n]
        return [(Scope(t, c), q) for (t, c, q), _ in ranked]

    def save(self) -> None:
        """Merge this process's counts into the shared file; a failure is logged, never raised."""
        if not self._counts:
            return
        try:
            with self._lock.hold():
                merged = {key: count * DECAY for key, count in self._load().items()}
                for key, count in self._counts.items():
                    merged[key] = merged.get(key, 0.0) + count
                ranked = sorted(merged.items(), key=lambda item: -item[1])[:KEEP]
                rows = [[t, c, q, round(n, 3)] for (t, c, q), n in ranked]
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
                os.replace(tmp, self.path)  # readers see the old file or the new one, never half
            self._counts.clear()
        except OSError as exc:
            log.warning("could not save recent queries to %s: %s", self.path, exc)

    def _load(self) -> dict[tuple[str, str, str], float]:
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
            return {(str(t), str(c), str(q)): float(n) for t, c, q, n in rows}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}
