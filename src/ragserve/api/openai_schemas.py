"""Bodies of the OpenAI-compatible endpoints, shaped as the official SDKs expect them.

Requests ignore fields we do not use (sampling parameters, `user`, tools...), because
clients send them by default; responses add `citations`, which SDKs keep as an extra field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragserve.api.schemas import CitationPublic, MaxTokens
from ragserve.types import NAME_PATTERN, NON_BLANK


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False


# The question is the last user message with text in it, so there must be one.
_HAS_A_QUESTION: dict[str, Any] = {
    "contains": {
        "type": "object",
        "properties": {"role": {"const": "user"}, "content": {"type": "string", "pattern": NON_BLANK}},
        "required": ["role", "content"],
    }
}


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(pattern=NAME_PATTERN, description="the collection to answer from (GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=256, json_schema_extra=_HAS_A_QUESTION)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    n: Literal[1] = Field(default=1, description="only one choice is generated")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: dict[str, int]) -> CompletionUsage:
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    citations: list[CitationPublic] = Field(description="the sources the answer cites, by its [n] markers")
    provider: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def completion_chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    *,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `delta=None` makes the usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    chunk.update(extra)
    return chunk
