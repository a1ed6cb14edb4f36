"""The offline default answerer: picks the source sentences that answer the question.

No model runs here. Each source is split into sentences, each sentence is scored by how
much of the question's informative term weight it covers (IDF estimated over the
candidate sentences, a bonus for matching word pairs, a small prior for the source's
retrieval rank), and the best few are quoted with their `[n]` markers. When nothing
covers enough of the question the answerer says so instead of quoting noise; that is
what lets the fallback router end every chain here.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ragserve.errors import ConfigurationError
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.retrieve.conversation import followed_up_turn
from ragserve.types import ChatTurn, ScoredChunk

NO_ANSWER = "I don't know: none of the retrieved sources answers this question."

# Tuned on the hand-written answerable and unanswerable cases in
# tests/unit/test_extractive.py: sentences that answer score 0.55-1.15, unanswerable
# questions 0-0.5. Just above one half, so that matching one of two equally weighted
# question terms ("capital" and "France" -> a sentence about France) is not an answer.
DEFAULT_MIN_RELEVANCE = 0.52
# A long question may be answered by sentences that each cover part of it; then the best
# must still cover LEAD_SHARE of min_relevance and every other SUPPORT_SHARE of it, so
# that two sentences each sharing one stray word with the question are not an answer.
LEAD_SHARE = 0.75
SUPPORT_SHARE = 0.6
# Further sentences must be at least this fraction as relevant as the best one, so a
# strong answer is not padded with sentences that merely mention a question word.
RELATIVE_FLOOR = 0.5
BIGRAM_BONUS = 0.15
# A question term found only in the title or an enclosing heading counts this much:
# it places the sentence in the right context without being said by it.
CONTEXT_WEIGHT = 0.5
RANK_PRIOR = 0.05
DENSITY_WEIGHT = 0.05
DUPLICATE_SIMILARITY = 0.8
MAX_UNIT_CHARS = 300
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
_SPACES = re.compile(r"\s+")
_PIECE = re.compile(r"\s*\S+")
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
    return [unit.text for unit in _units(text)]


def _units(text: str) -> list[_Unit]:
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
    return _SPACES.sub(" ", text).strip()


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


def _bigrams(sequence: Sequence[str]) -> set[tuple[str, str]]:
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


def relevance(question: str, sentence: str, idf: Idf, *, context: str = "") -> float:
    """How well `sentence` answers `question`, on a scale comparable across questions.

    The fraction of the question's IDF-weighted informative terms the sentence contains
    (terms found only in `context`, such as a title, count `CONTEXT_WEIGHT`), plus up to
    `BIGRAM_BONUS` for word pairs of the question it repeats. 0 when it shares no term,
    or none beyond those `context` already has.
    """
    return _Question.of(question, idf).relevance(terms(sentence), frozenset(terms(context)))


@dataclass(frozen=True, slots=True)
class _Question:
    weights: dict[str, float]  # informative term -> IDF weight
    bigrams: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, question: str, idf: Idf) -> _Question:
        q_terms = list(dict.fromkeys(terms(question, question=True)))
        return cls({term: idf(term) for term in q_terms}, frozenset(_bigrams(q_terms)))

    def coverage(self, direct: Collection[str], hinted: Collection[str]) -> float:
        found = sum(w for term, w in self.weights.items() if term in direct)
        if found == 0.0:
            return 0.0
        hint = sum(w for term, w in self.weights.items() if term not in direct and term in hinted)
        return (found + CONTEXT_WEIGHT * hint) / sum(self.weights.values())

    def relevance(self, s_terms: Sequence[str], context: Collection[str]) -> float:
        present = frozenset(s_terms)
        # Question terms that only name the source's topic (its title or heading) are why it
        # was retrieved, not what was asked: "How tall is the Eiffel Tower?" is not answered
        # by a sentence about the Eiffel Tower that never says "tall".
        focus = [term for term in self.weights if term not in context]
        if focus and not any(term in present for term in focus):
            return 0.0
        score = self.coverage(present, context)
        if score and self.bigrams:
            score += BIGRAM_BONUS * len(self.bigrams & _bigrams(s_terms)) / len(self.bigrams)
        return score


def _similarity(a: Collection[str], b: Collection[str]) -> float:
    union = len(set(a) | set(b))
    return len(set(a) & set(b)) / union if union else 1.0


# ---------------------------------------------------------------------------- answerer


@dataclass(slots=True)
class _Candidate:
    text: str
    source: int  # 0-based index into the sources passed in
    position: int
    sequence: list[str]  # its terms in order, for word pairs
    context: frozenset[str]  # terms of the source's title and headings
    terms: frozenset[str] = frozenset()
    relevance: float = 0.0
    rank_score: float = 0.0

    def __post_init__(self) -> None:
        self.terms = frozenset(self.sequence)

    @property
    def marker(self) -> str:
        return f"[{self.source + 1}]"


class ExtractiveAnswerer:
    """Answers by quoting the most relevant source sentences, each with its `[n]` marker.

    Deterministic and offline, so it ends every fallback chain. It answers when one
    sentence covers `min_relevance` of the question's informative term weight, or when
    the picked sentences together do and the best alone covers `LEAD_SHARE` of that;
    otherwise it says it does not know (`answered=False`, text `NO_ANSWER`).

        >>> answerer = ExtractiveAnswerer(max_sentences=2)
        >>> generation = await answerer.generate("Which port?", sources)  # doctest: +SKIP
        >>> generation.text  # doctest: +SKIP
        'The server listens on port 8000 by default. [1]'
    """

    name: str = "extractive"
    model: str = "extractive-v1"

    def __init__(
        self, max_sentences: int = 3, min_relevance: float = DEFAULT_MIN_RELEVANCE, max_chars: int = 600
    ) -> None:
        if max_sentences < 1:
            raise ConfigurationError("max_sentences must be at least 1")
        if min_relevance < 0.0:
            raise ConfigurationError("min_relevance must not be negative")
        if max_chars < 20:
            raise ConfigurationError("max_chars must be at least 20")
        self.max_sentences = max_sentences
        self.min_relevance = min_relevance
        self.max_chars = max_chars

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Generation:
        # A millisecond or two of pure CPU: cheaper inline than a hop to a thread.
        budget = self.max_chars
        if max_tokens is not None:
            budget = min(budget, max(4 * max_tokens, 20))  # ~4 characters per token
        # Quoting cannot resolve "it" in a follow-up: the quote answers the follow-up and
        # must also be about the turn it follows up on.
        previous = followed_up_turn(question, history)
        subject = frozenset(terms(previous, question=True)) if previous else frozenset()
        picked = self._pick(question, sources, budget, subject)
        if picked:
            picked.sort(key=lambda c: (c.source, c.position))
            text = " ".join(f"{_as_sentence(c.text)} {c.marker}" for c in picked)
            cited = list(dict.fromkeys(c.source + 1 for c in picked))
        else:
            text, cited = NO_ANSWER, []
        usage = {
            "prompt_tokens": _word_count(question) + sum(_word_count(s.text) for s in sources),
            "completion_tokens": _word_count(text),
        }
        return Generation(text, cited, bool(picked), self.name, self.model, usage)

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> AsyncIterator[StreamItem]:
        generation = await self.generate(question, sources, max_tokens=max_tokens, history=history)
        # Word by word, like a model would send it: clients render the same way for every provider.
        for piece in _PIECE.findall(generation.text):
            yield TokenDelta(piece)
        yield generation

    def _pick(
        self, question: str, sources: Sequence[ScoredChunk], budget: int, subject: frozenset[str] = frozenset()
    ) -> list[_Candidate]:
        q_terms = terms(question, question=True)
        if not q_terms:
            return []
        # A sentence that quotes the question ("try: ragserve query 'which formats?'") echoes it, not answers it.
        echo = _normalized(question).rstrip("?")
        candidates = [c for c in _candidates(sources) if len(echo) < 12 or echo not in _normalized(c.text)]
        on_subject = [c for c in candidates if c.terms & subject]
        candidates = on_subject or candidates
        q = _Question.of(question, Idf.from_term_sets((c.terms for c in candidates), vocabulary=q_terms))
        ranked = _rank(q, candidates)
        best = max((c.relevance for c in ranked), default=0.0)
        if best == 0.0 or best < LEAD_SHARE * self.min_relevance:
            return []
        alone = best >= self.min_relevance
        # A sentence as strong as an answer may join; a weaker one only when it covers part
        # of the question the others miss (the second half of "what port, and where are
        # documents stored?") with at least two of its terms, one shared word being chance.
        strong = max(self.min_relevance, RELATIVE_FLOOR * best)
        partial = max(SUPPORT_SHARE * self.min_relevance, RELATIVE_FLOOR * best)
        picked: list[_Candidate] = []
        covered: set[str] = set()
        used = 0
        for candidate in ranked:
            if len(picked) == self.max_sentences:
                break
            matched = candidate.terms & q.weights.keys()
            adds = len(matched) >= 2 and bool(matched - covered)
            if candidate.relevance < (strong if alone and not adds else partial):
                continue
            if not alone and not adds:
                continue
            if any(_similarity(candidate.terms, p.terms) >= DUPLICATE_SIMILARITY for p in picked):
                continue
            # The separating space, the sentence, a space and the marker.
            overhead = (1 if picked else 0) + 1 + len(candidate.marker)
            cost = overhead + len(_as_sentence(candidate.text))
            if used + cost > budget:
                if picked:
                    continue
                # Even the best sentence alone is too long: quote its start rather than nothing.
                candidate.text = _truncate(candidate.text, budget - overhead)
                cost = overhead + len(candidate.text)
            picked.append(candidate)
            covered |= candidate.terms
            used += cost
        together = q.coverage(covered, frozenset().union(*(c.context for c in picked)))
        return picked if alone or together >= self.min_relevance else []


def _normalized(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def _informative(text: str) -> bool:
    """A heading names a topic and a question asks one (FAQ entries restate the user's
    question): neither answers anything. Nor does a table row, mostly separators."""
    stripped = text.strip()
    if stripped.endswith("?"):
        return False
    letters = sum(ch.isalpha() for ch in stripped)
    return letters >= 12 and stripped.count(";") + stripped.count("|") <= len(stripped) / 40 + 1


def _candidates(sources: Sequence[ScoredChunk]) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    for index, source in enumerate(sources):
        source_context = terms(" ".join([source.title or "", *source.headings]))
        contexts: dict[str, frozenset[str]] = {}
        for position, unit in enumerate(_units(source.text)):
            if unit.heading or not _informative(unit.text):
                continue
            if unit.context not in contexts:
                contexts[unit.context] = frozenset(source_context + terms(unit.context))
            candidates.append(_Candidate(unit.text, index, position, terms(unit.text), contexts[unit.context]))
    return candidates


def _rank(q: _Question, candidates: list[_Candidate]) -> list[_Candidate]:
    """Score every candidate; best first (ties: source rank, then position)."""
    for candidate in candidates:
        if candidate.terms.isdisjoint(q.weights):
            candidate.rank_score = RANK_PRIOR / (1 + candidate.source)
            continue
        candidate.relevance = q.relevance(candidate.sequence, candidate.context)
        matched = sum(1 for term in candidate.terms if term in q.weights)
        density = matched / len(candidate.terms) if candidate.terms else 0.0
        # Prior and density only break near-ties: retrieval rank first, then concision.
        candidate.rank_score = candidate.relevance + RANK_PRIOR / (1 + candidate.source) + DENSITY_WEIGHT * density
    return sorted(candidates, key=lambda c: (-c.rank_score, c.source, c.position))


def _as_sentence(text: str) -> str:
    # Bullets and table rows often lack a full stop; the answer should read as prose.
    text = text.rstrip(" ,;:")
    return text if text.endswith((".", "!", "?", "…", '."', ".”", ".)")) else text + "."


def _truncate(text: str, limit: int) -> str:
    head = text[: max(limit - 1, 1)]
    if " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:") + "…"


def _word_count(text: str) -> int:
    return len(text.split())
