"""The one protocol every answer generator satisfies.

A provider turns a question and the retrieved sources into a cited answer. Sources are
numbered from 1 in the order given; the answer cites them as `[n]` markers, and
`Generation.cited` lists the numbers it used, so the caller can build citations without
parsing provider-specific formats.

Implementations do not inherit from anything: the extractive answerer, the
OpenAI-compatible and Anthropic providers and the fallback router all just have these
attributes and this method. A router that tries several providers is itself a provider.

    >>> from ragserve.types import ChatTurn, ScoredChunk
    >>> class EchoProvider:
    ...     name = "echo"
    ...     model = "echo-1"
    ...
    ...     async def generate(self, question, sources, *, max_tokens=None, history=()):
    ...         if not sources:
    ...             return Generation("I don't know.", [], False, self.name, self.model, {})
    ...         return Generation(f"{sources[0].text} [1]", [1], True, self.name, self.model, {})
    ...
    ...     async def stream(self, question, sources, *, max_tokens=None, history=()):
    ...         generation = await self.generate(question, sources, max_tokens=max_tokens)
    ...         yield TokenDelta(generation.text)
    ...         yield generation
    >>> provider: LLMProvider = EchoProvider()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ragserve.types import ChatTurn, ScoredChunk


@dataclass(slots=True)
class Generation:
    """What a provider returns for one question."""

    text: str  # the answer, with [n] markers; n is 1-based into the `sources` passed in
    cited: list[int]  # the distinct n's used, in order of first appearance
    answered: bool  # False when the provider says it does not know
    provider: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens
    invalid_citations: list[int] = field(default_factory=list)  # [n] markers that point at no source given
    prompt_version: str | None = None  # `llm.prompt.PROMPT_VERSION` for model providers; None when no prompt
    # Set by the router: (provider, error type) of each provider that failed before this one answered,
    # the degradations it caused, and the cost from the price table when one is configured.
    failures: list[tuple[str, str]] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """A piece of a streamed answer; the pieces concatenated are `Generation.text`."""

    text: str


StreamItem = TokenDelta | Generation


@runtime_checkable
class LLMProvider(Protocol):
    """Generates a cited answer from retrieved sources.

    `name` identifies the configured provider (it is reported in responses and metrics,
    so keep it short and bounded); `model` is the model that answered. `max_tokens`
    caps the answer's length when given; otherwise the provider's own default applies.
    `history` holds the conversation's earlier turns (oldest first) for providers that
    can use them; the question itself is not in it.
    Failures to reach a remote model raise `ragserve.errors.DependencyError` (or a
    subclass), which is what the router falls back on.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Generation: ...

    def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> AsyncIterator[StreamItem]:
        """Yield `TokenDelta`s as the answer is produced, then exactly one `Generation`.

        A failure before the first delta may be retried elsewhere; after it, the caller
        must report the break (it cannot take back text already sent).
        """
        ...
