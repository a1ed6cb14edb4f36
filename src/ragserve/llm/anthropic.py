"""Answers from Anthropic's Messages API through the official `anthropic` SDK.

The same RAG prompt as every provider (`llm.prompt.build_prompt`), shaped the way the
Messages API wants it: the instructions (and any system turns of the conversation) as the
`system` parameter, and turns that alternate user/assistant starting with a user turn.
The SDK never retries (the router does), and its exceptions are translated at the seam.

    provider = AnthropicProvider(
        "claude", base_url="https://api.anthropic.com", api_key=key, model="claude-sonnet-4-5", timeout_s=30
    )
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Literal

import anthropic
import anyio
import httpx2
from anthropic.types import MessageParam

from ragserve.errors import LLMError, LLMRateLimitedError, LLMTimeoutError, LLMUnavailableError
from ragserve.ingest.chunk import TokenCounter, default_token_counter
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.llm.openai_compat import NO_API_KEY, finish_generation, packed_prompt, status_error
from ragserve.llm.prompt import Prompt, Screen
from ragserve.types import ChatTurn, ScoredChunk

if TYPE_CHECKING:
    from anthropic.types import Usage

# The Anthropic SDK lets transport errors of a stream already under way through unwrapped.
_STREAM_READ_ERRORS = (httpx2.HTTPError, httpx2.StreamError, anyio.EndOfStream, OSError, ValueError)
# A conversation may open with the assistant (a greeting); the API wants a user turn first.
CONVERSATION_OPENER = "(The conversation so far.)"


class AnthropicProvider:
    """An `LLMProvider` over the Anthropic Messages API.

    Arguments as for `OpenAICompatibleProvider`, less `temperature` (this SDK's Messages API
    takes none); `base_url` is the API root without `/v1` (None: `https://api.anthropic.com`).
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None,
        model: str,
        timeout_s: float,
        max_context_tokens: int = 200_000,
        max_tokens: int = 512,
        counter: TokenCounter | None = None,
        screen: Screen | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.timeout_s = timeout_s
        self.max_context_tokens = max_context_tokens
        self.max_tokens = max_tokens
        self._counter = counter if counter is not None else default_token_counter()
        self._screen = screen  # what a retrieved chunk's text passes through before the prompt
        self._owns_client = http_client is None
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url,
            api_key=api_key or NO_API_KEY,
            timeout=timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Generation:
        answer_tokens = max_tokens or self.max_tokens
        prompt = packed_prompt(
            self.name, question, sources, history, self.max_context_tokens, answer_tokens, self._counter, self._screen
        )
        system, messages = anthropic_messages(prompt)
        try:
            message = await self._client.messages.create(
                model=self.model,
                system=system,
                messages=messages,
                max_tokens=answer_tokens,
            )
        except (anthropic.AnthropicError, ValueError) as exc:
            raise self._translate(exc) from exc
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = {"prompt_tokens": _input_tokens(message.usage), "completion_tokens": message.usage.output_tokens}
        return finish_generation(self.name, self.model, prompt, text, usage, self._counter)

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        *,
        max_tokens: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> AsyncIterator[StreamItem]:
        answer_tokens = max_tokens or self.max_tokens
        prompt = packed_prompt(
            self.name, question, sources, history, self.max_context_tokens, answer_tokens, self._counter, self._screen
        )
        system, messages = anthropic_messages(prompt)
        try:
            events = await self._client.messages.create(
                model=self.model,
                system=system,
                messages=messages,
                max_tokens=answer_tokens,
                stream=True,
            )
        except (anthropic.AnthropicError, ValueError) as exc:
            raise self._translate(exc) from exc
        parts: list[str] = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        try:
            iterator = events.__aiter__()
            while True:
                # Only the read is guarded: an error thrown in by the consumer must pass untouched.
                try:
                    event = await anext(iterator)
                except StopAsyncIteration:
                    break
                except (anthropic.AnthropicError, *_STREAM_READ_ERRORS) as exc:
                    raise self._translate(exc, streaming=True) from exc
                if event.type == "message_start":
                    usage["prompt_tokens"] = _input_tokens(event.message.usage)
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    parts.append(event.delta.text)
                    yield TokenDelta(event.delta.text)
                elif event.type == "message_delta":
                    usage["completion_tokens"] = event.usage.output_tokens  # cumulative, so the last one counts
        finally:
            await events.close()
        yield finish_generation(self.name, self.model, prompt, "".join(parts), usage, self._counter)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    def _translate(self, exc: Exception, *, streaming: bool = False) -> LLMError:
        name = self.name
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return LLMTimeoutError(f"{name}: no response within {self.timeout_s:g}s", provider=name)
        if isinstance(exc, anthropic.APIStatusError) and exc.status_code < 400:
            # An `error` event inside a stream that began with 200: its type says what happened.
            return _stream_error(name, exc.type, exc.api_message or exc.message)
        if isinstance(exc, anthropic.APIStatusError):
            return status_error(name, exc.status_code, exc.api_message or exc.message, exc.response.headers)
        if isinstance(
            exc, anthropic.APIConnectionError | httpx2.HTTPError | httpx2.StreamError | OSError | anyio.EndOfStream
        ):
            what = "the stream broke" if streaming else "connection failed"
            return LLMUnavailableError(f"{name}: {what}: {exc.__cause__ or exc}", provider=name)
        if isinstance(exc, ValueError | anthropic.APIResponseValidationError):
            return LLMUnavailableError(f"{name}: malformed response: {exc}", provider=name)
        return LLMUnavailableError(f"{name}: {type(exc).__name__}: {exc}", provider=name)


def anthropic_messages(prompt: Prompt) -> tuple[str, list[MessageParam]]:
    """(system, messages): system turns folded into the system prompt, roles alternating from user."""
    system = [prompt.system]
    turns: list[tuple[Literal["user", "assistant"], str]] = []
    for message in prompt.messages:
        role, content = message["role"], message["content"]
        if role == "system":
            system.append(content)
            continue
        speaker: Literal["user", "assistant"] = "assistant" if role == "assistant" else "user"
        if turns and turns[-1][0] == speaker:
            turns[-1] = (speaker, f"{turns[-1][1]}\n\n{content}")
        else:
            turns.append((speaker, content))
    if turns and turns[0][0] == "assistant":
        turns.insert(0, ("user", CONVERSATION_OPENER))
    messages: list[MessageParam] = []
    for role, content in turns:
        if role == "user":
            messages.append({"role": "user", "content": content})
        else:
            messages.append({"role": "assistant", "content": content})
    return "\n\n".join(system), messages


def _stream_error(provider: str, kind: str | None, message: str) -> LLMError:
    text = f"{provider}: {kind or 'error'} in the stream: {message}"
    if kind == "rate_limit_error":
        return LLMRateLimitedError(text, provider=provider)
    if kind == "invalid_request_error":
        return status_error(provider, 400, message, {})
    return LLMUnavailableError(text, provider=provider)


def _input_tokens(usage: Usage) -> int:
    # Cached prompt tokens are reported apart from `input_tokens`; the model read them all.
    return usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
