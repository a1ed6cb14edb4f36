"""Server-Sent Events framing, and turning a failure mid-stream into a typed `error` event."""

from __future__ import annotations

import json
import logging
from typing import Any

from ragserve.api.observability import record_stream_error
from ragserve.errors import RagserveError

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx must not buffer a stream


def encode_event(event: str | None, data: Any) -> bytes:
    """One SSE message. JSON has no raw newlines, so `data` is always one line."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def event_schema(*events: str) -> dict[str, Any]:
    """OpenAPI schema of one event of a `text/event-stream` body (each `data` is JSON text)."""
    names: dict[str, Any] = {"type": "string", "enum": list(events)} if events else {"type": "string"}
    return {
        "type": "object",
        "properties": {"event": names, "data": {"type": "string"}},
        "required": ["data"],
    }


def error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The body of an `error` event: our error body plus whether trying again may help."""
    record_stream_error(exc)
    if isinstance(exc, RagserveError):
        type_, message, retryable = exc.type, exc.message, exc.retryable
    else:
        log.exception("stream failed", exc_info=exc)
        type_, message, retryable = "internal_error", "internal error; see the server log", False
    error: dict[str, Any] = {"type": type_, "message": message, "request_id": request_id, "retryable": retryable}
    provider = getattr(exc, "provider", None)
    if provider:
        error["provider"] = provider
    return {"error": error}
