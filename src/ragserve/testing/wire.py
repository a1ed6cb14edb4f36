"""The bytes `fake_llm.FakeLLMServer` sends: both chat protocols' shapes and HTTP/1.1 framing.

The JSON and Server-Sent Events here follow what the official `openai` and `anthropic` SDKs
parse (their `types` modules): a chat completion and its `chat.completion.chunk` stream
ending in `data: [DONE]`; a Message and its named events (`message_start`,
`content_block_start`, `ping`, `content_block_delta`..., `content_block_stop`,
`message_delta`, `message_stop`); and each provider's own error body.
"""

from __future__ import annotations

import asyncio
import http
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

WireProtocol = Literal["openai", "anthropic"]


def default_answer(body: Any) -> str:
    """Echoes the question and cites [1] when the prompt numbers its sources; else declines."""
    last = _last_user_text(body)
    question = " ".join(last.rpartition("Question:")[2].split())[:200]
    if re.search(r"^\[1\]", last, re.MULTILINE):
        return f"The sources answer this question: {question} [1]"
    return "I don't know."


class OpenAIWire:
    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-fake{time.monotonic_ns()}"
        self.created = int(time.time())

    def _usage(self, usage: Mapping[str, int]) -> dict[str, int]:
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        return sse(None, {**chunk, "choices": choices, **extra})

    def completion(self, text: str, usage: Mapping[str, int]) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self._usage(usage),
        }

    def stream_head(self, usage: Mapping[str, int]) -> list[bytes]:
        delta = {"role": "assistant", "content": ""}
        return [self._chunk([{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}])]

    def stream_token(self, token: str) -> bytes:
        return self._chunk([{"index": 0, "delta": {"content": token}, "finish_reason": None, "logprobs": None}])

    def stream_tail(self, usage: Mapping[str, int], include_usage: bool) -> list[bytes]:
        events = [self._chunk([{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}])]
        if include_usage:
            events.append(self._chunk([], usage=self._usage(usage)))
        return [*events, b"data: [DONE]\n\n"]


class AnthropicWire:
    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"msg_fake{time.monotonic_ns()}"

    def _message(self, content: list[dict[str, Any]], stop: str | None, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def completion(self, text: str, usage: Mapping[str, int]) -> dict[str, Any]:
        tokens = {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
        return self._message([{"type": "text", "text": text}], "end_turn", tokens)

    def stream_head(self, usage: Mapping[str, int]) -> list[bytes]:
        start = self._message([], None, {"input_tokens": usage["prompt_tokens"], "output_tokens": 1})
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        return [
            sse("message_start", {"type": "message_start", "message": start}),
            sse("content_block_start", block),
            sse("ping", {"type": "ping"}),
        ]

    def stream_token(self, token: str) -> bytes:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}}
        return sse("content_block_delta", delta)

    def stream_tail(self, usage: Mapping[str, int], include_usage: bool) -> list[bytes]:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["completion_tokens"]},
        }
        return [
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", delta),
            sse("message_stop", {"type": "message_stop"}),
        ]


# The messages and types the real services send for these statuses.
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request: the request body is not valid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: at least one message is required"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("overloaded_error", "Overloaded"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(protocol: WireProtocol, code: int, message: str | None = None) -> dict[str, Any]:
    if protocol == "openai":
        kind, error_code, default = _OPENAI_ERRORS.get(
            code, ("server_error" if code >= 500 else "invalid_request_error", None, "Error.")
        )
        return {"error": {"message": message or default, "type": kind, "param": None, "code": error_code}}
    kind, default = _ANTHROPIC_ERRORS.get(code, ("api_error" if code >= 500 else "invalid_request_error", "Error."))
    return {
        "type": "error",
        "error": {"type": kind, "message": message or default},
        "request_id": f"req_fake{time.monotonic_ns()}",
    }


def error_event(protocol: WireProtocol, code: int) -> bytes:
    """The error a stream already under way ends with: Anthropic names the event, OpenAI does not."""
    return sse("error" if protocol == "anthropic" else None, error_body(protocol, code))


# Anthropic's SDK skips events without a name, so its broken event must carry one.
MALFORMED_EVENT: dict[WireProtocol, bytes] = {
    "openai": b'data: {"id": "chatcmpl-broken", "choices": [{"delta": \n\n',
    "anthropic": b'event: message_start\ndata: {"type": "message_start", "message": {\n\n',
}


def context_too_long_body(protocol: WireProtocol) -> dict[str, Any]:
    if protocol == "openai":
        message = (
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9120 "
            "tokens. Please reduce the length of the messages."
        )
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
    return error_body(protocol, 400, "prompt is too long: 210145 tokens > 200000 maximum")


def models_list(protocol: WireProtocol, model: str) -> dict[str, Any]:
    if protocol == "openai":
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "fake"}]}
    entry = {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z"}
    return {"data": [entry], "has_more": False, "first_id": model, "last_id": model}


def _last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def prompt_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    parts = [_content_text(body.get("system"))]
    parts += [_content_text(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)]
    return " ".join(parts)


def _content_text(content: Any) -> str:
    # Both protocols allow a string or a list of typed blocks.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def words(text: str) -> int:
    return len(text.split())


def retry_after_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------------- HTTP/1.1 framing


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], Any]:
    """(method, path without the query, headers with lowercased names, JSON body or None)."""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        raw = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            raw += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return method, target.split("?", 1)[0], headers, body


def head(code: int, content_type: str, headers: Mapping[str, str]) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Overloaded" if code == 529 else "Error"
    request_id = f"req_fake{time.monotonic_ns()}"
    # OpenAI names its request id x-request-id, Anthropic request-id; the SDKs put them on errors.
    lines = [f"HTTP/1.1 {code} {phrase}", f"content-type: {content_type}"]
    lines += [f"x-request-id: {request_id}", f"request-id: {request_id}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_raw(
    writer: asyncio.StreamWriter, code: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
) -> bool:
    writer.write(head(code, content_type, {**(headers or {}), "content-length": str(len(body))}) + body)
    await writer.drain()
    return True


async def send_json(
    writer: asyncio.StreamWriter, code: int, payload: Any, headers: Mapping[str, str] | None = None
) -> bool:
    if isinstance(payload, str | bytes):
        raw = payload.encode() if isinstance(payload, str) else payload
        return await send_raw(writer, code, raw, "text/plain", headers)
    return await send_raw(writer, code, json.dumps(payload).encode(), "application/json", headers)


async def start_stream(writer: asyncio.StreamWriter) -> None:
    headers = {"transfer-encoding": "chunked", "cache-control": "no-cache"}
    writer.write(head(200, "text/event-stream; charset=utf-8", headers))
    await writer.drain()


async def send_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One chunk of a chunked body; empty data is the terminating chunk."""
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def sse(event: str | None, data: Mapping[str, Any]) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data)}\n\n".encode()
