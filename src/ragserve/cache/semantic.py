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
   pairs score 0.97-0.99); these rules catch what similarity cannot;
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

import bisect
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ragserve.cache.base import Cache
from ragserve.llm.extractive import stem, terms
from ragserve.observability.metrics import get_metrics
from ragserve.types import Scope

DEFAULT_THRESHOLD = 0.95
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
        `guard(new_query, cached_query)` returns why two questions differ, default `polarity_conflict`."""
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
        self.guard = guard if guard is not None else polarity_conflict
        # Why lookups ended, for /status and benchmarks: "hit", "empty", "below_threshold",
        # "polarity", "expired", "evicted", "evidence".
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
                outcome = "polarity"
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


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Every form counts the same: "lacks" and "does not have" say one thing, so a paraphrase
# may swap them, while adding or removing any one of them flips the claim.
_NEGATIONS = frozenset(
    _words(
        "not no never none nor neither nobody nothing nowhere cannot without lack lacks lacking lacked"
        " absence absent unable inability incapable fail fails failed failing failure"
    )
)
# Opposite pairs, counted per side as stems ("increased", "increases" count once as "up"):
# "raises" for "increases" keeps the counts, "decreases" for "increases" does not.
_DIRECTIONS = (
    "increase raise elevate higher high more greater enhance promote activate upregulate induce stimulate"
    " gain boost augment accelerate enable facilitate strengthen trigger perpetuate sustain",
    "decrease reduce lower low less fewer smaller diminish inhibit suppress downregulate impair attenuate"
    " prevent block slow loss decline repress impede hinder weaken abolish disrupt",
    "improve benefit beneficial protect protective favorable alleviate ameliorate",
    "worsen exacerbate harm harmful detrimental aggravate adverse",
    "positive positively",
    "negative negatively",
    "easy easily simple",
    "difficult hard",
)
# Words that set two things against each other; "to" and "into" count after "from".
_MARKERS = frozenset(_words("than versus vs compared whereas unlike relative from"))
_SIDE_WINDOW = 3
_NEGATING_PREFIXES = ("non", "un", "in", "im", "ir", "il", "dis", "anti")
# Words as the extractive tokeniser sees them (decimals and thousands stay one token: "10.5",
# "1,000"), and the punctuation that ends a clause.
_CLAUSE_TOKEN = re.compile(r"[^\W_]*\d+(?:[.,]\d+)+|[^\W_]+(?:['’][^\W_]+)?|[,;:]")
_CLAUSE_BREAKS = frozenset(",;:")
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+$")
_NUMBER_WORDS = {
    word: str(i)
    for i, word in enumerate(
        _words(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
            " sixteen seventeen eighteen nineteen twenty"
        )
    )
} | {"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000"}


@dataclass(frozen=True, slots=True)
class _Comparison:
    markers: tuple[str, ...]
    near: dict[str, frozenset[int]]  # term next to a marker, in its clause -> the sides it sits on
    anywhere: dict[str, frozenset[int]]  # every term in a clause with a marker -> the sides it sits on


@dataclass(frozen=True, slots=True)
class _Polarity:
    negations: int
    numbers: frozenset[str]
    directions: tuple[int, ...]
    stems: frozenset[str]
    comparison: _Comparison


def polarity_conflict(new_query: str, cached_query: str) -> str | None:
    """Why two similar questions must not share an answer, or None when their text gives no reason.

    "negation": different counts of negation cues (not, no, never, n't, without, lack, fail,
    absence, unable, non-...); "number": different sets of digit-bearing tokens or number
    words ("8000", "10%", "CD4", "five"); "direction": different counts of increase, decrease,
    improve, worsen, positive, negative, easy or difficult words; "antonym": a word only one
    side has is the other side's word with a negating prefix ("ineffective", "unrelated");
    "order": the same comparison with its sides swapped ("A more than B" / "B more than A",
    "from A to B" / "from B to A").
    """
    a, b = _polarity(new_query), _polarity(cached_query)
    if a.negations != b.negations:
        return "negation"
    if a.numbers != b.numbers:
        return "number"
    if a.directions != b.directions:
        return "direction"
    if _prefix_antonym(a.stems - b.stems, b.stems) or _prefix_antonym(b.stems - a.stems, a.stems):
        return "antonym"
    x, y = a.comparison, b.comparison
    if x.markers and x.markers == y.markers and (_swapped(x.near, y.anywhere) or _swapped(y.near, x.anywhere)):
        return "order"
    return None


@lru_cache(maxsize=4096)
def _polarity(text: str) -> _Polarity:
    negations = 0
    numbers: set[str] = set()
    stems: set[str] = set()
    classes = _direction_stems()
    directions = [0] * len(classes)
    tokens = _CLAUSE_TOKEN.findall(text.lower().replace("’", "'"))
    for token in tokens:
        if token in _CLAUSE_BREAKS:
            continue
        if token in _NEGATIONS or token.endswith("n't") or _non_word(token):
            negations += 1
        if any(ch.isdigit() for ch in token):
            # Letters stay: "CD4" is not "CD8". Thousands separators are only formatting.
            numbers.add(token.replace(",", "") if _THOUSANDS.match(token) else token)
            continue
        if token in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[token])
        base = stem(token.removesuffix("'s"))
        stems.add(base)
        for i, words in enumerate(classes):
            directions[i] += base in words
    return _Polarity(negations, frozenset(numbers), tuple(directions), frozenset(stems), _comparison(tokens))


def _comparison(tokens: list[str]) -> _Comparison:
    """Which side of each comparison marker ("than", "from ... to") every content term is on."""
    sequence: list[str] = []
    clause_of: list[int] = []
    boundaries: list[int] = []  # where in `sequence` each marker stood
    marker_clauses: list[int] = []
    markers: list[str] = []
    clause = 0
    for i, token in enumerate(tokens):
        if token in _CLAUSE_BREAKS:
            clause += 1
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        # "less than 6 months" compares with a number, which the number rule already covers.
        if token == "than" and (following[:1].isdigit() or following in _NUMBER_WORDS):
            pass
        elif token in _MARKERS or (token in ("to", "into") and markers[-1:] == ["from"]):
            markers.append(token)
            boundaries.append(len(sequence))
            marker_clauses.append(clause)
        for term in terms(token):
            sequence.append(term)
            clause_of.append(clause)
    # What is compared sits next to the marker and in its clause: a phrase moved from the end
    # of the sentence to its front ("During apoptosis, ...") crosses no marker that matters.
    near = {
        position
        for boundary, clause in zip(boundaries, marker_clauses, strict=True)
        for position in range(max(boundary - _SIDE_WINDOW, 0), min(boundary + _SIDE_WINDOW, len(sequence)))
        if clause_of[position] == clause
    }
    # A term in a clause of its own ("In apoptosis, ...") is on no side of anything.
    compared = [position for position, clause in enumerate(clause_of) if clause in marker_clauses]
    return _Comparison(tuple(markers), _sides(sequence, boundaries, near), _sides(sequence, boundaries, compared))


def _sides(sequence: list[str], boundaries: list[int], positions: Iterable[int]) -> dict[str, frozenset[int]]:
    found: dict[str, set[int]] = {}
    for position in positions:
        found.setdefault(sequence[position], set()).add(bisect.bisect_right(boundaries, position))
    return {term: frozenset(sides) for term, sides in found.items()}


def _swapped(near: dict[str, frozenset[int]], anywhere: dict[str, frozenset[int]]) -> bool:
    """Whether a term next to one side of a comparison sits on another side in the other question."""
    return any(
        len(sides) == 1 and len(anywhere[term]) == 1 and sides != anywhere[term]
        for term, sides in near.items()
        if term in anywhere
    )


@lru_cache(maxsize=1)
def _direction_stems() -> tuple[frozenset[str], ...]:
    return tuple(frozenset(stem(word) for word in _words(words)) for words in _DIRECTIONS)


def _non_word(token: str) -> bool:
    # "non-smokers" splits into "non" and "smokers"; "nonsmokers" is one word.
    return token == "non" or (token.startswith("non") and len(token) >= 7 and not token.startswith("none"))


def _prefix_antonym(extra: frozenset[str], other: frozenset[str]) -> bool:
    """Whether a word only one side has is a word of the other side with a negating prefix."""
    for word in extra:
        for prefix in _NEGATING_PREFIXES:
            base = word[len(prefix) :]
            if not word.startswith(prefix) or len(base) < 4:
                continue
            # Stems of one word may differ in their ending: "ineffect" / "effectiv(ely)".
            if base in other or (
                len(base) >= 5 and any(o.startswith(base) or base.startswith(o) for o in other if len(o) >= 5)
            ):
                return True
    return False
