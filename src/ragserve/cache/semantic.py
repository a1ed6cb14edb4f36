"""A semantic answer cache: a new question close enough to one already answered gets that answer.

Two halves with different homes:

- The similarity INDEX lives in this process. Per `Scope` (tenant and collection) it is a
  bounded float32 matrix of recent normalised query vectors and, per row, an `Entry`: the
  query text, the key of its answer payload, the documents retrieved for it (evidence) and
  the documents its answer cited. Scopes never share rows, so one tenant's question cannot
  find another tenant's answer. Past `max_entries_per_scope` the oldest row goes.
- The ANSWER PAYLOADS live in the shared `Cache`, stored by the caller under the row's key
  and tagged with the documents they used. TTL, cross-replica sharing and invalidation are
  that cache's job: when a document changes, its tag evicts the payload, and the row that
  points at it is dead; `lookup` drops such a row when it finds the payload gone.

A lookup is a hit only when every check passes, cheapest first:

1. similarity: cosine (the dot product of unit vectors) at least `threshold`;
2. polarity (`polarity_conflict`, pure text): the two questions carry the same number of
   negation cues (any form: "lacks" and "does not have" both count one), the same numbers
   and digit-bearing names ("CD4" is not "CD8"), the same counts of increase-, decrease-,
   improve-, worsen-... words; neither has a word that is the other's with a negating
   prefix ("ineffective"), and a comparison keeps its sides ("A more than B" is not "B more
   than A"). Embeddings barely move when "not" is inserted or two sides are swapped (SciFact
   pairs score 0.97-0.99); these rules catch what similarity cannot. `strict_conflict`,
   the default, also refuses a question that swaps a content word for another ("common" /
   "rare"): safer, at the price of synonym rephrasings (see bench/semantic_cache.py);
3. the payload is still in the shared cache;
4. evidence: the caller's retrieval for the new question still contains every document the
   cached answer cited, and at least `min_overlap` of the documents the cached question
   retrieved. A paraphrase finds the same documents; a look-alike question usually does not.

Rows above the threshold are tried best first until one passes the text checks, so a
cached negation cannot hide a cached paraphrase just behind it.

    semantic = SemanticCache(cache)
    hit = await semantic.lookup(scope, question, vector, evidence=top_document_ids)
    if hit is None:
        answer = ...  # answer it, store the payload under `key` with document tags, then
        semantic.remember(scope, question, vector, key, evidence_ids, cited_ids)

A `CacheError` from the shared cache propagates (the row is kept): callers fail open.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ragserve.cache.base import Cache
from ragserve.cache.polarity import strict_conflict
from ragserve.observability.metrics import get_metrics
from ragserve.types import Scope

DEFAULT_THRESHOLD = 0.90
DEFAULT_MIN_OVERLAP = 0.5
# Rows above the threshold that the text checks may pass over before the lookup gives up.
MAX_CANDIDATES = 8
_INITIAL_ROWS = 64

Guard = Callable[[str, str], str | None]


@dataclass(frozen=True, slots=True)
class Entry:
    """One remembered question: what it asked, where its answer is, what the answer rested on."""

    query: str
    key: str
    evidence_ids: tuple[str, ...]
    cited_ids: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class SemanticHit:
    key: str
    payload: bytes
    similarity: float
    cached_query: str


@dataclass(slots=True)
class _ScopeIndex:
    """Rows of unit vectors and their entries; `rows` keeps remember order, oldest first."""

    matrix: np.ndarray
    entries: list[Entry] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, entry: Entry, vector: np.ndarray, limit: int) -> None:
        n = len(self.entries)
        if n == self.matrix.shape[0]:
            grown = np.empty((min(max(2 * n, _INITIAL_ROWS), limit), self.matrix.shape[1]), np.float32)
            grown[:n] = self.matrix[:n]
            self.matrix = grown
        self.matrix[n] = vector
        self.entries.append(entry)
        self.rows[entry.key] = n

    def remove(self, key: str) -> None:
        # Swap the last row into the hole: O(1), and `rows` keeps its order because
        # re-assigning an existing key does not move it.
        row = self.rows.pop(key)
        last = len(self.entries) - 1
        if row != last:
            moved = self.entries[last]
            self.entries[row] = moved
            self.matrix[row] = self.matrix[last]
            self.rows[moved.key] = row
        self.entries.pop()

    def ranked(self, vector: np.ndarray, floor: float, limit: int) -> list[tuple[int, float]]:
        """Rows with similarity >= floor, best first, at most `limit`."""
        n = len(self.entries)
        if n == 0:
            return []
        sims = self.matrix[:n] @ vector
        above = np.flatnonzero(sims >= floor)
        if above.size > limit:
            above = above[np.argpartition(-sims[above], limit - 1)[:limit]]
        order = above[np.argsort(-sims[above], kind="stable")]
        return [(int(i), float(sims[i])) for i in order]


class SemanticCache:
    """The per-process similarity index over answers kept in a shared `Cache` (see the module docstring)."""

    def __init__(
        self,
        cache: Cache,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        max_entries_per_scope: int = 5000,
        clock: Callable[[], float] = time.monotonic,
        max_age_s: float | None = None,
        guard: Guard | None = None,
    ) -> None:
        """`max_age_s` (set it to the payloads' TTL) drops older rows without asking the cache;
        `guard(new_query, cached_query)` returns why two questions must not share an answer, None if
        nothing: `strict_conflict` (the default) or the more lenient `polarity_conflict`."""
        if not -1.0 <= threshold <= 1.0:
            raise ValueError("threshold must be a cosine similarity, between -1 and 1")
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError("min_overlap must be between 0 and 1")
        if max_entries_per_scope < 1:
            raise ValueError("max_entries_per_scope must be at least 1")
        self.cache = cache
        self.threshold = threshold
        self.min_overlap = min_overlap
        self.max_entries_per_scope = max_entries_per_scope
        self.clock = clock
        self.max_age_s = max_age_s
        self.guard = guard if guard is not None else strict_conflict
        # Why lookups ended, for /status and benchmarks: "hit", "empty", "below_threshold",
        # "guard", "expired", "evicted", "evidence".
        self.outcomes: Counter[str] = Counter()
        self._scopes: dict[Scope, _ScopeIndex] = {}

    def nearest(self, scope: Scope, vector: np.ndarray) -> tuple[Entry, float] | None:
        """The most similar row of `scope` and its cosine similarity, whatever the threshold."""
        index = self._scopes.get(scope)
        unit = _unit(vector)
        if index is None or unit is None or unit.shape[0] != index.matrix.shape[1]:
            return None
        ranked = index.ranked(unit, float("-inf"), 1)
        if not ranked:
            return None
        row, similarity = ranked[0]
        return index.entries[row], similarity

    async def lookup(
        self,
        scope: Scope,
        query: str,
        vector: np.ndarray,
        evidence: Callable[[], Awaitable[Sequence[str]]],
    ) -> SemanticHit | None:
        """A cached answer to a question like `query`, or None.

        `evidence()` returns the document ids the new question retrieves (its top k); it is
        awaited only once the cheaper checks have passed.
        """
        entry, similarity, outcome = self._candidate(scope, query, vector)
        payload: bytes | None = None
        if entry is not None:
            payload = await self.cache.get(entry.key)
            if payload is None:
                self._drop(scope, entry)
                outcome = "evicted"
            elif not evidence_confirms(entry, await evidence(), self.min_overlap):
                outcome = "evidence"
        self.outcomes[outcome] += 1
        _count_metric("hit" if outcome == "hit" else "miss")
        if entry is None or payload is None or outcome != "hit":
            return None
        return SemanticHit(entry.key, payload, similarity, entry.query)

    def remember(
        self,
        scope: Scope,
        query: str,
        vector: np.ndarray,
        key: str,
        evidence_ids: Sequence[str],
        cited_ids: Sequence[str],
    ) -> None:
        """Index an answered question whose payload the caller stored (or will store) under `key`.

        `evidence_ids` are the documents retrieved for it, `cited_ids` those its answer cited.
        Remembering a key again replaces its row (and makes it the newest).
        """
        unit = _unit(vector)
        if unit is None:
            return
        index = self._scopes.get(scope)
        if index is None or index.matrix.shape[1] != unit.shape[0]:
            # A new embedder dimension makes every old row incomparable.
            index = _ScopeIndex(np.empty((min(_INITIAL_ROWS, self.max_entries_per_scope), unit.shape[0]), np.float32))
            self._scopes[scope] = index
        if key in index.rows:
            index.remove(key)
        while len(index.entries) >= self.max_entries_per_scope:
            index.remove(next(iter(index.rows)))
        entry = Entry(query, key, tuple(dict.fromkeys(evidence_ids)), tuple(dict.fromkeys(cited_ids)), self.clock())
        index.add(entry, unit, self.max_entries_per_scope)

    def forget_scope(self, scope: Scope) -> None:
        self._scopes.pop(scope, None)

    def size(self) -> int:
        """Rows across every scope, dead ones not yet discovered included."""
        return sum(len(index.entries) for index in self._scopes.values())

    def _candidate(self, scope: Scope, query: str, vector: np.ndarray) -> tuple[Entry | None, float, str]:
        index = self._scopes.get(scope)
        unit = _unit(vector)
        if index is None or unit is None or unit.shape[0] != index.matrix.shape[1] or not index.entries:
            return None, 0.0, "empty"
        ranked = index.ranked(unit, self.threshold, MAX_CANDIDATES)
        if not ranked:
            return None, 0.0, "below_threshold"
        entries = [(index.entries[row], similarity) for row, similarity in ranked]
        now = self.clock()
        outcome = "expired"
        for entry, similarity in entries:
            if self.max_age_s is not None and now - entry.created_at > self.max_age_s:
                self._drop(scope, entry)
            elif self.guard(query, entry.query) is None:
                return entry, similarity, "hit"
            else:
                outcome = "guard"
        return None, 0.0, outcome

    def _drop(self, scope: Scope, entry: Entry) -> None:
        # The row may have been replaced while we awaited the cache: drop only this entry.
        index = self._scopes.get(scope)
        if index is not None and (row := index.rows.get(entry.key)) is not None and index.entries[row] is entry:
            index.remove(entry.key)


def _count_metric(result: str) -> None:
    # `cache_requests` arrives with the cache layers; until then there is nothing to count on.
    counter = getattr(get_metrics(), "cache_requests", None)
    if counter is not None:
        counter.labels(layer="semantic", result=result).inc()


def _unit(vector: np.ndarray) -> np.ndarray | None:
    flat = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(flat))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return flat / norm


def evidence_confirms(entry: Entry, new_ids: Sequence[str], min_overlap: float) -> bool:
    """Whether the new question's top documents still hold up the cached answer."""
    if not entry.evidence_ids:
        return False  # nothing to confirm against
    found = set(new_ids)
    if not found.issuperset(entry.cited_ids):
        return False
    return len(found.intersection(entry.evidence_ids)) / len(entry.evidence_ids) >= min_overlap


# ---------------------------------------------------------------------------- polarity
