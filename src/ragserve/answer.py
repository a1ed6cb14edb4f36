"""From a retrieval and a generation to the `Answer` callers get: citations, timings, flags."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence

from ragserve.llm.base import Generation
from ragserve.observability.metrics import get_metrics
from ragserve.retrieve.hybrid import Retrieval
from ragserve.types import Answer, Citation, ProviderFailure

SNIPPET_CHARS = 300


def build_answer(
    retrieval: Retrieval,
    generation: Generation,
    generate_started: float,
    started: float,
    *,
    extra_degraded: Sequence[str] = (),
    cache_ms: float | None = None,
) -> Answer:
    """The answer a caller gets: the generation's text, its markers turned into citations, timings, flags."""
    timings = dict(retrieval.timings_ms)
    timings["generate"] = (time.perf_counter() - generate_started) * 1000
    if cache_ms is not None:
        timings["cache"] = cache_ms
    timings["total"] = (time.perf_counter() - started) * 1000
    citations = []
    for n in generation.cited:
        if not 1 <= n <= len(retrieval.chunks):
            continue  # a marker pointing at nothing we gave the generator is not a citation
        chunk = retrieval.chunks[n - 1]
        citations.append(
            Citation(
                number=n,
                document_id=chunk.document_id,
                chunk_id=chunk.chunk_id,
                title=chunk.title,
                source=chunk.source,
                score=chunk.score,
                snippet=snippet(chunk.text),
            )
        )
    degraded = list(dict.fromkeys([*extra_degraded, *retrieval.degraded, *generation.degraded]))
    for mode in degraded:
        get_metrics().degraded.labels(mode=mode).inc()
    warnings = []
    if generation.answered and not citations:
        warnings.append("no_citations")  # an answer that cites nothing it was given
    if generation.invalid_citations:
        warnings.append("invalid_citations")
    return Answer(
        answer=generation.text,
        citations=citations,
        sources=retrieval.chunks,
        provider=generation.provider,
        model=generation.model,
        answered=generation.answered,
        timings_ms={k: round(v, 3) for k, v in timings.items()},
        degraded=degraded,
        usage=generation.usage,
        failures=[ProviderFailure(p, e) for p, e in generation.failures],
        warnings=warnings,
        cost_usd=generation.cost_usd,
    )


def snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"


_PIECE = re.compile(r"\s*\S+")


def answer_pieces(text: str) -> Iterator[str]:
    """A finished answer as the word-sized pieces a stream sends (a cached answer streams like a new one)."""
    yield from _PIECE.findall(text)
