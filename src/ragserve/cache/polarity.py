"""Whether two similar questions still ask the same thing: negation, numbers, direction, order.

Pure text rules for the semantic cache. Embeddings put "X increases Y" and "X does not
increase Y" close together; these rules tell them apart. `polarity_conflict` compares
negation cues, numbers, direction words, prefix antonyms and the sides of a comparison;
`strict_conflict` also refuses a swapped content word ("very common" vs "rare"), at the
price of also refusing synonym rewrites.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ragserve.llm.text import stem, terms


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
    " gain boost augment accelerate enable facilitate strengthen trigger perpetuate sustain"
    " upregulation upmodulate upmodulation overexpression",
    "decrease reduce lower low less fewer smaller diminish inhibit suppress downregulate impair attenuate"
    " prevent block slow loss decline repress impede hinder weaken abolish disrupt"
    " downregulation downmodulate downmodulation underexpression",
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
_NEGATING_PREFIXES = ("non", "un", "in", "im", "ir", "il", "dis", "de", "anti")
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
    side has is the other side's word with a negating prefix ("ineffective", "destabilizes");
    "order": the same comparison with its sides swapped ("A more than B" / "B more than A",
    "from A to B" / "from B to A"), or the same words with two of them exchanged ("the risk
    of male prisoners is ten times that of female prisoners" / "... of female prisoners ...
    that of male prisoners", "X activates Y" / "Y activates X").
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
    if x.markers and x.markers == y.markers and (_swapped(x, y) or _swapped(y, x)):
        return "order"
    if _exchanged(terms(new_query, question=True), terms(cached_query, question=True)):
        return "order"
    return None


# How a question may open without asking anything more: "Is it true that X?" asks X.
_FRAMING = re.compile(
    r"^\s*(?:(?:is|was)\s+it\s+(?:true|correct|right|the\s+case|a\s+fact)\s+that"
    r"|(?:is|was)\s+there\s+(?:any\s+)?evidence\s+(?:that|for)"
    r"|(?:do|does)\s+(?:the\s+)?(?:evidence|research|studies|data)\s+(?:show|suggest|support)\s+that"
    r"|(?:can|could)\s+you\s+(?:tell|explain\s+to)\s+me(?:\s+whether|\s+if)?"
    r"|(?:please\s+)?(?:tell|explain\s+to)\s+me(?:\s+whether|\s+if)?)\b",
    re.IGNORECASE,
)


def _content(question: str) -> set[str]:
    return set(terms(_FRAMING.sub("", question), question=True))


def _exchanged(a: list[str], b: list[str]) -> bool:
    """Whether `b` is `a` with two of its terms trading places (and nothing else changed).

    Two-term questions are left alone: "In B, A" for "A in B" is a rephrasing, and with
    two terms a moved phrase and an exchange look the same.
    """
    if len(a) != len(b) or len(a) < 3:
        return False
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return len(differ) == 2 and a[differ[0]] == b[differ[1]] and a[differ[1]] == b[differ[0]]


def strict_conflict(new_query: str, cached_query: str) -> str | None:
    """`polarity_conflict`, and any difference in content words: only their order and the
    question's framing ("Is it true that ...", "How do I ...", articles) may change.

    "substitution": each question has a content word the other lacks. "common" for
    "infrequent", "central" for "peripheral", "modest" for "dramatic" move an embedding as
    little as a synonym does, and no word list can tell the two apart. "qualifier": one
    question adds words ("... in many cell types", "... in production"), which narrows or
    widens what it asks. The price is that synonym rephrasings ("change" / "modify the
    port") miss.
    """
    reason = polarity_conflict(new_query, cached_query)
    if reason is not None:
        return reason
    a, b = _content(new_query), _content(cached_query)
    if a - b and b - a:
        return "substitution"
    return "qualifier" if a != b else None


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


def _swapped(a: _Comparison, b: _Comparison) -> bool:
    """Whether a term next to one side of a comparison in `a` sits on another side in `b`.

    Terms found on more than one side of either question ("therapy ... compared to ...
    therapies") say nothing about which side is which.
    """
    return any(
        len(a.anywhere[term]) == 1 and len(b.anywhere[term]) == 1 and sides != b.anywhere[term]
        for term, sides in a.near.items()
        if term in b.anywhere
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
