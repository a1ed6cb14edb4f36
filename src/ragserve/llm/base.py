"""The one protocol every answer generator satisfies.

A provider turns a question and the retrieved sources into a cited answer. Sources are
numbered from 1 in the order given; the answer cites them as `[n]` markers, and
`Generation.cited` lists the numbers it used, so the caller can build citations without
parsing provider-specific formats.

Implementations do not inherit from anything: the extractive answerer, the
OpenAI-compatible and Anthropic providers and the fallback router all just have these
attributes and this method. A router that tries several providers is itself a provider.

    >>> from ragserve.types import ScoredChunk
    >>> class EchoProvider:
    ...     name = "echo"
    ...     model = "echo-1"
    ...
    ...     async def generate(self, question, sources, *, max_tokens=None):
    ...         if not sources:
    ...             return Generation("I don't know.", [], False, self.name, self.model, {})
    ...         return Generation(f"{sources[0].text} [1]", [1], True, self.name, self.model, {})
    >>> provider: LLMProvider = EchoProvider()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ragserve.types import ScoredChunk


@dataclass(slots=True)
class Generation:
    """What a provider returns for one question."""

    text: str  # the answer, with [n] markers; n is 1-based into the `sources` passed in
    cited: list[int]  # the distinct n's used, in order of first appearance
    answered: bool  # False when the provider says it does not know
    provider: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens


@runtime_checkable
class LLMProvider(Protocol):
    """Generates a cited answer from retrieved sources.

    `name` identifies the configured provider (it is reported in responses and metrics,
    so keep it short and bounded); `model` is the model that answered. `max_tokens`
    caps the answer's length when given; otherwise the provider's own default applies.
    Failures to reach a remote model raise `ragserve.errors.DependencyError` (or a
    subclass), which is what the router falls back on.
    """

    name: str
    model: str

    async def generate(
        self, question: str, sources: Sequence[ScoredChunk], *, max_tokens: int | None = None
    ) -> Generation: ...
