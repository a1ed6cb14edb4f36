"""The RAG prompt: context packing to a token budget, the numbered layout, citations, declines."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ragserve.errors import ContextTooLongError
from ragserve.llm.extractive import NO_ANSWER
from ragserve.llm.prompt import (
    MIN_BLOCK_TOKENS,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    build_prompt,
    pack_context,
    parse_citations,
    says_it_does_not_know,
    source_block,
)
from ragserve.types import ChatTurn, ScoredChunk


class WordCounter:
    """One token per whitespace-separated word: easy to reason about in a test."""

    splits_on_whitespace = True

    def count(self, text: str) -> int:
        return len(text.split())

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]


COUNTER = WordCounter()


def sentences(topic: str, n: int, words: int = 10) -> str:
    """`n` sentences of exactly `words` words each, numbered so that each one is distinct."""
    filler = " ".join(["word"] * (words - 3))
    return " ".join(f"{topic} sentence {i} {filler}." for i in range(1, n + 1))


def chunk(text: str, n: int = 1, *, title: str | None = None, headings: tuple[str, ...] = ()) -> ScoredChunk:
    return ScoredChunk(chunk_id=n, document_id=f"doc-{n}", text=text, score=1.0 / n, title=title, headings=headings)


def block_tokens(texts: dict[int, str], sources: Sequence[ScoredChunk]) -> int:
    return sum(COUNTER.count(source_block(n, sources[n - 1], t)) for n, t in texts.items())


# ------------------------------------------------------------------ packing


def test_sources_that_fit_are_kept_whole() -> None:
    sources = [chunk(sentences("alpha", 3), 1), chunk(sentences("beta", 3), 2)]
    texts, trimmed = pack_context(sources, 1000, COUNTER)
    assert texts == {1: sources[0].text, 2: sources[1].text}
    assert trimmed == []


def test_packing_fits_the_budget() -> None:
    sources = [chunk(sentences(topic, 8), n) for n, topic in enumerate(["alpha", "beta", "gamma"], start=1)]
    for budget in (60, 100, 150, 200):
        texts, _ = pack_context(sources, budget, COUNTER)
        assert block_tokens(texts, sources) <= budget


def test_the_longest_block_is_trimmed_first() -> None:
    long, short = sentences("alpha", 8), sentences("beta", 3)
    sources = [chunk(short, 1), chunk(long, 2)]
    budget = block_tokens({1: short, 2: long}, sources) - 15  # two sentences too many
    texts, trimmed = pack_context(sources, budget, COUNTER)
    assert texts[1] == short
    assert texts[2] == sentences("alpha", 6)
    assert trimmed == [2]


def test_a_screened_block_is_kept_whole_or_dropped_never_cut() -> None:
    def fence(text: str) -> str:
        return f"<<untrusted\n{text}\nend>>" if "beta" in text else text

    long, other = sentences("beta", 8), sentences("alpha", 8)
    sources = [chunk(other, 1), chunk(long, 2)]
    screened = {1: other, 2: fence(long)}
    for budget in range(40, block_tokens(screened, sources) + 5, 7):
        texts, trimmed = pack_context(sources, budget, COUNTER, screen=fence)
        assert block_tokens(texts, sources) <= budget
        assert 2 not in trimmed
        if 2 in texts:
            assert texts[2] == fence(long)  # the fence always closes


def test_among_equal_blocks_the_lower_ranked_is_trimmed_first() -> None:
    sources = [chunk(sentences("alpha", 5), 1), chunk(sentences("beta", 5), 2)]
    budget = block_tokens({1: sources[0].text, 2: sources[1].text}, sources) - 5
    texts, trimmed = pack_context(sources, budget, COUNTER)
    assert texts[1] == sources[0].text
    assert trimmed == [2]


def test_trimming_never_cuts_a_sentence() -> None:
    text = sentences("alpha", 9, words=7) + " A last sentence without its full stop"
    sources = [chunk(text, 1)]
    for budget in range(30, 80, 7):
        texts, _ = pack_context(sources, budget, COUNTER)
        if 1 in texts:
            kept = texts[1]
            assert text.startswith(kept)
            assert kept == text or (kept.endswith(".") and text[len(kept)] == " ")


def test_a_block_that_cannot_shrink_is_dropped() -> None:
    one_sentence = " ".join(["unbroken"] * 80)  # no sentence end to cut at
    sources = [chunk(sentences("alpha", 3), 1), chunk(one_sentence, 2)]
    texts, trimmed = pack_context(sources, 60, COUNTER)
    assert sorted(texts) == [1]
    assert trimmed == []


def test_a_block_trimmed_below_the_minimum_is_dropped() -> None:
    sources = [chunk(sentences("alpha", 2, words=MIN_BLOCK_TOKENS - 4), 1)]
    budget = COUNTER.count(source_block(1, sources[0], sources[0].text)) - 1
    texts, trimmed = pack_context(sources, budget, COUNTER)
    assert texts == {}
    assert trimmed == []


def test_blank_sources_are_left_out() -> None:
    texts, _ = pack_context([chunk("   \n", 1), chunk("Real text here.", 2)], 100, COUNTER)
    assert list(texts) == [2]


# ------------------------------------------------------------------ the prompt


def test_the_prompt_numbers_sources_and_ends_with_the_question() -> None:
    sources = [
        chunk("The server listens on port 8000.", 1, title="Server", headings=("Config", "Network")),
        chunk("Vectors live in SQLite.", 2),
    ]
    prompt = build_prompt("Which port?", sources, context_tokens=4000, counter=COUNTER)
    assert prompt.system == SYSTEM_PROMPT
    assert "[1] or [2][3]" in prompt.system
    assert prompt.version == PROMPT_VERSION
    assert prompt.sources == [1, 2]
    last = prompt.messages[-1]
    assert last["role"] == "user"
    assert last["content"].startswith("Sources:\n\n[1] Server — Config › Network\nThe server listens on port 8000.")
    assert "\n\n[2]\nVectors live in SQLite." in last["content"]
    assert last["content"].endswith("Question: Which port?")


def test_history_comes_before_the_sources_turn() -> None:
    history = [ChatTurn("user", "Tell me about the server."), ChatTurn("assistant", "It is a RAG service. [1]")]
    prompt = build_prompt(
        "Which port?", [chunk("Port 8000.", 1)], history=history, context_tokens=4000, counter=COUNTER
    )
    assert prompt.messages[:2] == [
        {"role": "user", "content": "Tell me about the server."},
        {"role": "assistant", "content": "It is a RAG service. [1]"},
    ]
    assert len(prompt.messages) == 3


def test_dropped_sources_keep_the_numbers_of_the_rest() -> None:
    sources = [chunk(sentences("alpha", 3), 1), chunk(" ".join(["unbroken"] * 400), 2), chunk(sentences("gamma", 3), 3)]
    fixed = COUNTER.count(SYSTEM_PROMPT) + COUNTER.count("Why?") + 8 * 2 + 32 + 512
    prompt = build_prompt("Why?", sources, context_tokens=fixed + 100, counter=COUNTER)
    assert prompt.sources == [1, 3]
    content = prompt.messages[-1]["content"]
    assert "[3]\ngamma sentence 1" in content
    assert "unbroken" not in content


def test_no_sources_says_so() -> None:
    prompt = build_prompt("Which port?", [], context_tokens=4000, counter=COUNTER)
    assert prompt.sources == []
    assert "(no sources were found)" in prompt.messages[-1]["content"]


def test_the_answer_budget_is_reserved() -> None:
    sources = [chunk(sentences("alpha", 40), 1)]
    small = build_prompt("Why?", sources, context_tokens=1200, counter=COUNTER, answer_tokens=900)
    large = build_prompt("Why?", sources, context_tokens=1200, counter=COUNTER, answer_tokens=100)
    assert small.context_tokens < large.context_tokens
    assert small.trimmed == [1]


def test_a_question_that_alone_does_not_fit_raises() -> None:
    question = " ".join(["why"] * 500)
    with pytest.raises(ContextTooLongError, match="tokens"):
        build_prompt(question, [chunk("Port 8000.", 1)], context_tokens=600, counter=COUNTER)


def test_a_long_conversation_that_does_not_fit_raises() -> None:
    history = [ChatTurn("user", " ".join(["talk"] * 300))] * 4
    with pytest.raises(ContextTooLongError):
        build_prompt("Why?", [], history=history, context_tokens=1000, counter=COUNTER)


# ------------------------------------------------------------------ citations and declines


def test_citations_in_both_styles() -> None:
    assert parse_citations("Paris [1]. Also Lyon [2][3].", [1, 2, 3]) == ([1, 2, 3], [])
    assert parse_citations("See [1, 3] and [2; 1].", [1, 2, 3]) == ([1, 3, 2], [])


def test_citations_keep_first_appearance_order_without_repeats() -> None:
    assert parse_citations("[3] then [1] then [3] again [1].", [1, 2, 3]) == ([3, 1], [])


def test_invented_citations_are_reported_apart() -> None:
    assert parse_citations("True [1]. Made up [7]. Also [2, 9].", [1, 2]) == ([1, 2], [7, 9])
    # The numbers given are those that reached the prompt, not 1..n.
    assert parse_citations("[2] and [3]", [1, 3]) == ([3], [2])


def test_text_without_markers_cites_nothing() -> None:
    assert parse_citations("No markers here, just (1) and [a].", [1]) == ([], [])


@pytest.mark.parametrize(
    "text",
    ["I don't know.", "  I don’t know", "i don't know: nothing says.", "**I don't know**", NO_ANSWER],
)
def test_declines_are_recognised(text: str) -> None:
    assert says_it_does_not_know(text)


@pytest.mark.parametrize("text", ["Port 8000 [1].", "I know: port 8000 [1].", "The sources say I don't know [1]."])
def test_answers_are_not_declines(text: str) -> None:
    assert not says_it_does_not_know(text)
