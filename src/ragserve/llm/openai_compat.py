"""Answers from any OpenAI-compatible chat server: OpenAI, vLLM, Ollama, llama.cpp, TGI, LiteLLM.

The request is the shared RAG prompt (`llm.prompt.build_prompt`) sent through the official
`openai` SDK. Retries belong to the router, so the SDK never retries (`max_retries=0`), and
no SDK exception leaves this module: each is translated into the `LLMError` tree at the
seam, always naming the configured provider.

    provider = OpenAICompatibleProvider(
        "local-vllm", base_url="http://vllm:8000/v1", api_key=None, model="qwen2.5-7b", timeout_s=20
    )
    generation = await provider.generate("Which port?", sources)
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import openai
from openai.types.chat import ChatCompletionMessageParam

from ragserve.errors import (
    ContextTooLongError,
    LLMBadRequestError,
    LLMError,
    LLMRateLimitedError,
    LLMTimeoutError,
    LLMUnavailableError,
)
from ragserve.ingest.chunk import TokenCounter, default_token_counter
from ragserve.llm.base import Generation, StreamItem, TokenDelta
from ragserve.llm.prompt import Prompt, Screen, build_prompt, parse_citations, says_it_does_not_know
from ragserve.types import ChatTurn, ScoredChunk

if TYPE_CHECKING:
    import httpx2

# How servers say the prompt is over the window when they give no machine-readable code:
# vLLM and OpenAI ("maximum context length"), llama.cpp ("context size"), Anthropic ("prompt is too long").
CONTEXT_LENGTH_MESSAGE = re.compile(
    r"context[ _-]length|maximum context|context (?:size|window)|prompt is too long|too many (?:input )?tokens",
    re.IGNORECASE,
)
# Local servers (vLLM, Ollama, llama.cpp) need no key, but the SDK refuses to start without
# one, and reading OPENAI_API_KEY behind the settings' back would surprise.
NO_API_KEY = "none"


class OpenAICompatibleProvider:
    """An `LLMProvider` over the chat completions API of any OpenAI-compatible server.

    `max_context_tokens` is the model's whole window; the prompt is packed to leave
    `max_tokens` of it for the answer. `counter` estimates token counts for packing (and
    for usage when the server reports none); by default the embedder's tokenizer, which
    counts about as many tokens as the chat models' own do for English text.
    `http_client` replaces the SDK's own `httpx2.AsyncClient` (the caller then closes it).
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout_s: float,
        max_context_tokens: int = 8192,
        max_tokens: int = 512,
        temperature: float | None = None,
        counter: TokenCounter | None = None,
        screen: Screen | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.timeout_s = timeout_s
        self.max_context_tokens = max_context_tokens
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._counter = counter if counter is not None else default_token_counter()
        self._screen = screen  # what a retrieved chunk's text passes through before the prompt
        self._owns_client = http_client is None
        self._client = openai.AsyncOpenAI(
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
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=_chat_messages(prompt),
                max_tokens=answer_tokens,
                temperature=self.temperature if self.temperature is not None else openai.omit,
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise self._translate(exc) from exc
        if not response.choices:
            raise LLMUnavailableError(f"{self.name}: the response has no choices", provider=self.name)
        text = response.choices[0].message.content or ""
        usage = None
        if response.usage is not None:
            usage = {
                "prompt_tokens": response.usage.prompt_tokens,
                "completion_tokens": response.usage.completion_tokens,
            }
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
        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=_chat_messages(prompt),
                max_tokens=answer_tokens,
                temperature=self.temperature if self.temperature is not None else openai.omit,
                stream=True,
                stream_options={"include_usage": True},
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise self._translate(exc) from exc
        parts: list[str] = []
        usage: dict[str, int] | None = None
        try:
            iterator = chunks.__aiter__()
            while True:
                # Only the read is guarded: an error thrown in by the consumer must pass untouched.
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except (openai.OpenAIError, ValueError) as exc:
                    raise self._translate(exc, streaming=True) from exc
                if chunk.usage is not None:
                    usage = {
                        "prompt_tokens": chunk.usage.prompt_tokens,
                        "completion_tokens": chunk.usage.completion_tokens,
                    }
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        yield TokenDelta(choice.delta.content)
        finally:
            await chunks.close()
        yield finish_generation(self.name, self.model, prompt, "".join(parts), usage, self._counter)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    def _translate(self, exc: Exception, *, streaming: bool = False) -> LLMError:
        name = self.name
        if isinstance(exc, openai.APITimeoutError):
            return LLMTimeoutError(f"{name}: no response within {self.timeout_s:g}s", provider=name)
        if isinstance(exc, openai.APIConnectionError):
            what = "the stream broke" if streaming else "connection failed"
            return LLMUnavailableError(f"{name}: {what}: {exc.__cause__ or exc}", provider=name)
        if isinstance(exc, openai.APIStatusError):
            return status_error(name, exc.status_code, _api_message(exc), exc.response.headers, code=exc.code)
        if isinstance(exc, ValueError | openai.APIResponseValidationError):
            return LLMUnavailableError(f"{name}: malformed response: {exc}", provider=name)
        # APIError from an `error` event mid-stream, or an SDK error we do not know yet.
        return LLMUnavailableError(f"{name}: {type(exc).__name__}: {exc}", provider=name)


def status_error(
    provider: str, status: int, message: str, headers: Mapping[str, str], *, code: str | None = None
) -> LLMError:
    """The `LLMError` for an HTTP error status, as both remote providers map them."""
    text = f"{provider}: HTTP {status}: {message}"
    if status == 429:
        return LLMRateLimitedError(text, provider=provider, retry_after=retry_after_seconds(headers))
    if status == 408:
        return LLMTimeoutError(text, provider=provider)
    if status >= 500 or status == 409:  # 409: a lock timeout on the provider's side, worth another try
        return LLMUnavailableError(text, provider=provider)
    if status == 413 or code == "context_length_exceeded" or CONTEXT_LENGTH_MESSAGE.search(message):
        return ContextTooLongError(text, provider=provider)
    return LLMBadRequestError(text, provider=provider)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    if milliseconds := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def packed_prompt(
    provider: str,
    question: str,
    sources: Sequence[ScoredChunk],
    history: Sequence[ChatTurn],
    context_tokens: int,
    answer_tokens: int,
    counter: TokenCounter,
    screen: Screen | None = None,
) -> Prompt:
    """`build_prompt`, with a prompt that cannot fit reported as this provider's error."""
    try:
        return build_prompt(
            question,
            sources,
            history=history,
            context_tokens=context_tokens,
            counter=counter,
            answer_tokens=answer_tokens,
            screen=screen,
        )
    except ContextTooLongError as exc:
        raise ContextTooLongError(f"{provider}: {exc.message}", provider=provider) from exc


def finish_generation(
    provider: str, model: str, prompt: Prompt, text: str, usage: Mapping[str, int] | None, counter: TokenCounter
) -> Generation:
    """The `Generation` for a model's answer: citations checked against the sources sent."""
    cited, invalid = parse_citations(text, prompt.sources)
    if not usage or not usage.get("prompt_tokens") or not usage.get("completion_tokens"):
        # Some servers (older llama.cpp, TGI) report no usage; an estimate beats a zero in the ledger.
        sent = counter.count_many([prompt.system, *(m["content"] for m in prompt.messages)])
        usage = {"prompt_tokens": sum(sent), "completion_tokens": counter.count(text)}
    answered = bool(text.strip()) and not says_it_does_not_know(text)
    return Generation(
        text=text,
        cited=cited,
        answered=answered,
        provider=provider,
        model=model,
        usage={"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]},
        invalid_citations=invalid,
        prompt_version=prompt.version,
    )


def _chat_messages(prompt: Prompt) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": prompt.system}]
    for message in prompt.messages:
        content = message["content"]
        if message["role"] == "assistant":
            messages.append({"role": "assistant", "content": content})
        elif message["role"] == "system":
            messages.append({"role": "system", "content": content})
        else:
            messages.append({"role": "user", "content": content})
    return messages


def _api_message(exc: openai.APIStatusError) -> str:
    # The SDK keeps the body's `error` object; servers that are only nearly compatible send text.
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return exc.message
