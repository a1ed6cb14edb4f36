"""The RAG prompt: numbered context blocks, a citation rule, and the context packed to fit.

Every model provider builds its request from `build_prompt()`, so all of them see the same
versioned instructions (`PROMPT_VERSION` is reported with each answer) and cite sources the
same way, as `[n]` markers that `parse_citations()` maps back to chunks.

    prompt = build_prompt("Which port?", sources, history=(), context_tokens=3000, counter=counter)
    messages = [{"role": "system", "content": prompt.system}, *prompt.messages]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ragserve.errors import ContextTooLongError
from ragserve.ingest.chunk import TokenCounter
from ragserve.types import ChatTurn, ScoredChunk

PROMPT_VERSION = "rag-v1"
Screen = Callable[[str], str]  # a retrieved chunk's text in, the text the model may see out

SYSTEM_PROMPT = """You answer questions using only the numbered sources you are given.
Rules:
- Base every statement on the sources. Do not use outside knowledge.
- After each sentence that uses a source, cite it with its number in square brackets, like [1] or [2][3].
- Cite only numbers of sources you were given.
- If the sources do not contain the answer, reply exactly: I don't know.
- Be concise. Answer in the language of the question."""

NO_ANSWER_PATTERN = re.compile(r"^\W*i\s+don['’]t\s+know\b", re.IGNORECASE)
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s+")
MIN_BLOCK_TOKENS = 24  # a source trimmed below this says too little to be worth its header


@dataclass(slots=True)
class Prompt:
    system: str
    messages: list[dict[str, str]]  # the conversation so far, ending with the user turn holding the context
    sources: list[int]  # 1-based numbers of the sources included (in full or trimmed)
    context_tokens: int
    version: str = PROMPT_VERSION
    trimmed: list[int] = field(default_factory=list)  # sources cut to fit


def source_block(number: int, chunk: ScoredChunk, text: str) -> str:
    head = f"[{number}]"
    if chunk.title:
        head += f" {chunk.title}"
    if chunk.headings:
        head += " — " + " › ".join(chunk.headings)
    return f"{head}\n{text.strip()}"


def pack_context(
    sources: Sequence[ScoredChunk], budget: int, counter: TokenCounter, screen: Screen | None = None
) -> tuple[dict[int, str], list[int]]:
    """Source texts by 1-based number, trimmed to fit `budget` tokens together.

    While over budget, the longest block loses its last sentence (never part of one); a
    block that cannot shrink further, or would say too little, is dropped, lowest-ranked
    first among equals. Returns the kept texts and the numbers of the trimmed ones.

    `screen` (the injection guard) sees each text first; a text it changed (fenced) is kept
    whole or dropped, never trimmed, so its fence always closes.
    """
    raw = {n: chunk.text.strip() for n, chunk in enumerate(sources, start=1) if chunk.text.strip()}
    texts = {n: screen(t) for n, t in raw.items()} if screen is not None else dict(raw)
    whole = {n for n in texts if texts[n] != raw[n]}
    sizes = {n: counter.count(source_block(n, sources[n - 1], t)) for n, t in texts.items()}
    trimmed: set[int] = set()
    while texts and sum(sizes.values()) > budget:
        longest = max(texts, key=lambda n: (sizes[n], n))
        shorter = None if longest in whole else _drop_last_sentence(texts[longest])
        if shorter is None or counter.count(shorter) < MIN_BLOCK_TOKENS:
            del texts[longest], sizes[longest]
            trimmed.discard(longest)
            continue
        texts[longest] = shorter
        sizes[longest] = counter.count(source_block(longest, sources[longest - 1], shorter))
        trimmed.add(longest)
    return texts, sorted(trimmed)


def _drop_last_sentence(text: str) -> str | None:
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return None
    return text[: ends[-1].start() + 1].rstrip()


def build_prompt(
    question: str,
    sources: Sequence[ScoredChunk],
    *,
    history: Sequence[ChatTurn] = (),
    context_tokens: int,
    counter: TokenCounter,
    answer_tokens: int = 512,
    screen: Screen | None = None,
) -> Prompt:
    """The system prompt, earlier turns, and a last user turn of numbered sources + the question.

    `context_tokens` is the model's whole window; the instructions, the conversation, the
    question and `answer_tokens` for the reply are reserved first, and the sources get the
    rest. Raises `ContextTooLongError` when even that reservation does not fit.
    """
    turns = [{"role": t.role, "content": t.content} for t in history]
    fixed = counter.count(SYSTEM_PROMPT) + counter.count(question) + sum(counter.count(t.content) for t in history)
    overhead = 8 * (len(turns) + 2) + 32  # role markers and separators, generously
    budget = context_tokens - fixed - overhead - answer_tokens
    if budget <= 0:
        raise ContextTooLongError(
            f"the question and conversation need about {fixed + overhead + answer_tokens} tokens; "
            f"the model takes {context_tokens}"
        )
    texts, trimmed = pack_context(sources, budget, counter, screen)
    blocks = [source_block(n, sources[n - 1], texts[n]) for n in sorted(texts)]
    context = "\n\n".join(blocks) if blocks else "(no sources were found)"
    user = f"Sources:\n\n{context}\n\nQuestion: {question}"
    return Prompt(
        system=SYSTEM_PROMPT,
        messages=[*turns, {"role": "user", "content": user}],
        sources=sorted(texts),
        context_tokens=sum(counter.count(b) for b in blocks),
        trimmed=trimmed,
    )


def parse_citations(text: str, given: Sequence[int]) -> tuple[list[int], list[int]]:
    """The `[n]` markers of an answer: (cited numbers that were given, numbers that were not).

    Both lists keep the order of first appearance; `[1, 3]` and `[1][3]` both count.
    """
    allowed = set(given)
    cited: dict[int, None] = {}
    invented: dict[int, None] = {}
    for match in _MARKER.finditer(text):
        for part in re.split(r"\s*[,;]\s*", match.group(1)):
            n = int(part)
            (cited if n in allowed else invented)[n] = None
    return list(cited), list(invented)


def says_it_does_not_know(text: str) -> bool:
    return bool(NO_ANSWER_PATTERN.match(text.strip()))
