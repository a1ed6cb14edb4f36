"""The offline default answerer: picks the source sentences that answer the question.

No model runs here. Each source is split into sentences, each sentence is scored by how
much of the question's informative term weight it covers (IDF estimated over the
candidate sentences, a bonus for matching word pairs, a small prior for the source's
retrieval rank), and the best few are quoted with their `[n]` markers. When nothing
covers enough of the question the answerer says so instead of quoting noise; that is
what lets the fallback router end every chain here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass

from ragserve.errors import ConfigurationError
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.llm.text import PIECE, SPACES, Idf, bigrams, terms, units
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
        return cls({term: idf(term) for term in q_terms}, frozenset(bigrams(q_terms)))

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
            score += BIGRAM_BONUS * len(self.bigrams & bigrams(s_terms)) / len(self.bigrams)
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
        for piece in PIECE.findall(generation.text):
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
    return SPACES.sub(" ", text).strip().lower()


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
        for position, unit in enumerate(units(source.text)):
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
