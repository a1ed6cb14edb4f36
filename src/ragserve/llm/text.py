"""Text for lexical answering: sentences (markdown-aware), a light stemmer, terms and IDF.

Pure functions over plain strings, shared by the extractive answerer and the semantic
cache's wording rules.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_UNIT_CHARS = 300  # a sentence longer than this is cut at a clause or word break
IDF_FLOOR = 0.25


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOPWORDS = _wordset(
    """a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each either else etc few for from further had hadn't has
    hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
    how how's however i i'd i'll i'm i've if in into is isn't it it's its itself just let's
    may me might more most must mustn't my myself no nor not of off on once only or other
    ought our ours ourselves out over own per same shall shan't she she'd she'll she's should
    shouldn't so some such than that that's the their theirs them themselves then there
    there's therefore these they they'd they'll they're they've this those though through to
    too under until up upon us very via was wasn't we we'd we'll we're we've were weren't what
    what's when when's where where's whether which while who who's whom whose why why's will
    with within without won't would wouldn't yes yet you you'd you'll you're you've your yours
    yourself yourselves"""
)
# Words that frame a question but that an answering sentence rarely repeats.
_QUESTION_STOPWORDS = _wordset(
    "define definition describe explain give happen happened happens know list long many mean meaning means much often"
    " please show tell"
)
# Tokens that end with a period without ending the sentence ("Dr. Smith", "e.g. this").
_ABBREVIATIONS = _wordset(
    """al approx apr aug cf co corp dec dept dr e.g eg feb fig figs i.e ie inc jan jr
    jul jun ltd mar messrs mr mrs ms mt no nos nov oct p pp prof rev sec sep sept sr st vol
    vols vs"""
)

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
# Lines that separate blocks and carry no text: code fences, rules, table header rules.
_SEPARATOR = re.compile(r"^\s*(?:```|~~~|([-*_=])(?:\s*\1){2,}\s*$|\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$)")
_BOUNDARY = re.compile(r"([.!?…]+)([\"'”’)\]]*)\s+(?=\S)")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,–-]\s*\d+)*\]")
_EMPHASIS = re.compile(r"\*\*|__|`")
SPACES = re.compile(r"\s+")
PIECE = re.compile(r"\s*\S+")
_WORD = re.compile(r"[^\W_]")
_TOKEN = re.compile(r"[^\W_]*\d+(?:[.,]\d+)+|[^\W_]+(?:['’][^\W_]+)?")


# ---------------------------------------------------------------------------- text


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    heading: bool
    context: str  # the nearest markdown heading above it, if any


def split_sentences(text: str) -> list[str]:
    """Split text into sentence-like units, markdown-aware.

    Headings, bullet items and table rows are units of their own (without their markers);
    wrapped lines of a paragraph are joined; abbreviations, initials and decimals do not
    end a sentence; a unit longer than `MAX_UNIT_CHARS` is cut at a clause or word break.
    """
    return [unit.text for unit in units(text)]


def units(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    heading = ""
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            units.extend(_Unit(s, False, heading) for s in _sentences(_clean(" ".join(paragraph))))
            paragraph.clear()

    for line in text.splitlines():
        if not line.strip() or _SEPARATOR.match(line):
            flush()
            continue
        if match := _HEADING.match(line):
            flush()
            heading = _clean(match.group(1))
            if heading:
                units.append(_Unit(heading, True, heading))
            continue
        line = _QUOTE.sub("", line)
        if _BULLET.match(line) or line.lstrip().startswith("|"):
            flush()
            cells = _BULLET.sub("", line).strip().strip("|").split("|")
            line = "; ".join(cell.strip() for cell in cells if cell.strip())
        paragraph.append(line.strip())
    flush()
    return units


def _sentences(block: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(block):
        if _ends_sentence(block, match):
            sentences.append(block[start : match.end(2)])
            start = match.end()
    sentences.append(block[start:])
    pieces = (piece for s in sentences for piece in _cut_long(s.strip(), MAX_UNIT_CHARS))
    return [p for p in pieces if _WORD.search(p)]


def _ends_sentence(block: str, match: re.Match[str]) -> bool:
    following = block[match.end()]
    # Lowercase after the stop means it was an abbreviation we do not know ("approx. five").
    if following.islower():
        return False
    if match.group(1) != ".":
        return True
    word = block[block.rfind(" ", 0, match.start(1)) + 1 : match.start(1)].lstrip("([\"'").lower()
    if word in _ABBREVIATIONS:
        return False
    # A lone letter is an initial ("J. R. Smith"), not the end of a sentence.
    return not (len(word) == 1 and word.isalpha())


def _cut_long(sentence: str, limit: int) -> list[str]:
    pieces: list[str] = []
    while len(sentence) > limit:
        window = sentence[: limit + 1]
        cut = max(window.rfind("; "), window.rfind(", "), window.rfind(": "))
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(sentence[: cut + 1].strip())
        sentence = sentence[cut + 1 :].strip()
    pieces.append(sentence)
    return [p for p in pieces if p]


def _clean(text: str) -> str:
    # The membership tests skip regex passes that most plain-text blocks do not need.
    if "](" in text:
        text = _LINK.sub(r"\1", text)
    if "[" in text:
        # Citation markers already in a source would collide with the ones we add.
        text = _CITATION.sub("", text)
    if "*" in text or "_" in text or "`" in text:
        text = _EMPHASIS.sub("", text)
    return SPACES.sub(" ", text).strip()


@lru_cache(maxsize=16384)
def stem(word: str) -> str:
    """A light suffix-stripping stemmer (Porter-lite) for lowercase words.

    It only has to send inflections and common derivations of a word to one key
    (`configure`, `configured`, `configuring`, `configuration`; `policy`, `policies`)
    and be cheap; a stem need not be a word.
    """
    if len(word) <= 2 or not word.isalpha():
        return word
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "i"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word not in _NOT_INFLECTED and not word.endswith("eed"):
        for suffix in ("ing", "ed"):
            if word.endswith(suffix):
                base = word[: -len(suffix)]
                if len(base) >= 2 and any(ch in "aeiouy" for ch in base):
                    if base.endswith(("at", "bl", "iz")):
                        base += "e"  # "tokenized" -> "tokenize", like the bare verb
                    elif len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                        base = base[:-1]  # "stopped" -> "stop"
                    word = base
                break
    for suffix, replacement, min_base in _SUFFIXES:
        if word.endswith(suffix):
            base = word[: -len(suffix)]
            if len(base) >= min_base:
                word = base + replacement
                if len(word) > 4 and word[-1] == word[-2] and word[-1] not in "aeioulsz":
                    word = word[:-1]  # "embedder" -> "embed", like "embedding"
            break
    if word.endswith("y") and len(word) > 3 and word[-2] not in "aeiou":
        word = word[:-1] + "i"
    if word.endswith("e"):
        word = word[:-1]
    return word


_NOT_INFLECTED = _wordset("embed hundred imbed naked sacred shred wicked")
# (suffix, replacement, shortest base it may leave), longest suffixes first.
_SUFFIXES = (
    ("ization", "", 3), ("isation", "", 3), ("ability", "", 3), ("ication", "i", 3),
    ("ational", "ate", 3), ("fulness", "", 3), ("iveness", "", 3), ("ically", "ic", 3),
    ("ation", "", 3), ("ition", "", 3), ("ction", "ct", 3), ("stion", "st", 4), ("ement", "", 3),
    ("ment", "", 4), ("ness", "", 3),
    ("izer", "", 3), ("iser", "", 3), ("ably", "", 3), ("ally", "al", 3), ("fully", "", 3),
    ("able", "", 3), ("ible", "", 3), ("ful", "", 3), ("less", "", 3), ("ity", "", 3),
    ("ive", "", 3), ("ize", "", 3), ("ise", "", 3), ("ous", "", 3), ("al", "", 5),
    ("er", "", 4), ("ly", "", 4),
)  # fmt: skip


def terms(text: str, *, question: bool = False) -> list[str]:
    """The informative terms of `text`, in order: lowercased, stopwords dropped, stemmed."""
    found = map(_term, _TOKEN.findall(text.lower()))
    if question:
        return [term for term in found if term and term not in _question_stems()]
    return [term for term in found if term]


@lru_cache(maxsize=32768)
def _term(token: str) -> str:
    # Cached per token: this runs for every word of every candidate sentence.
    token = token.replace("’", "'").removesuffix("'s")
    if token in _STOPWORDS or (len(token) == 1 and not token.isdigit()):
        return ""
    return stem(token.replace("'", ""))


@lru_cache(maxsize=1)
def _question_stems() -> frozenset[str]:
    return frozenset(stem(word) for word in _QUESTION_STOPWORDS)


def bigrams(sequence: Sequence[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(sequence))


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class Idf:
    """BM25 inverse document frequency over a set of candidate sentences."""

    df: dict[str, int]
    n: int

    @classmethod
    def from_term_sets(cls, term_sets: Iterable[Collection[str]], *, vocabulary: Collection[str] | None = None) -> Idf:
        """Count document frequencies; only of `vocabulary` (say, a question's terms) if given."""
        df: dict[str, int] = {}
        n = 0
        for term_set in term_sets:
            n += 1
            for term in set(term_set) if vocabulary is None else set(vocabulary).intersection(term_set):
                df[term] = df.get(term, 0) + 1
        return cls(df, n)

    def __call__(self, term: str) -> float:
        # A term no candidate contains weighs as much as the rarest present one, not more:
        # the coverage it costs then reads the same whether there are 3 candidates or 300.
        df = max(self.df.get(term, 0), 1)
        return IDF_FLOOR + math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))
