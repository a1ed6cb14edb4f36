"""Pure ASGI middleware: request ids on every response, and a hard cap on body size."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Accepts a sane `X-Request-ID` or makes one; exposes it as `request.state.request_id`.

    Also puts `request.state.response_headers` (rate-limit headers, set while the request is
    handled) on the response, whatever produced it: a route, an error handler, a 429.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                extra: dict[str, str] = state.get("response_headers") or {}
                if extra:
                    given = {k.lower() for k, _ in headers}
                    headers += [
                        (k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in given
                    ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class JsonBodyMiddleware:
    """Treats a POST body as JSON unless it says multipart.

    `curl -d '{"query": ...}'` labels its body application/x-www-form-urlencoded; every
    POST route here takes JSON (uploads aside), so that label is a client default, not intent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            given = dict(scope["headers"]).get(b"content-type", b"")
            if not given.startswith(b"multipart/") and b"json" not in given:
                # In place: outer middleware reads what routing writes into this same scope.
                scope["headers"] = [*headers, (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`, by Content-Length or by counting a streamed body.

    `path_limits` gives exact paths (uploads) a limit of their own instead of `max_bytes`.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, send, limit)
            return
        seen = 0
        too_large = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The framework may turn our exception into its own error response; answer 413 instead.
            nonlocal replaced
            if too_large:
                if message["type"] == "http.response.start" and not replaced:
                    replaced = True
                    await self._reject(scope, send, limit)
                return
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not replaced:
                replaced = True
                await self._reject(scope, send, limit)

    def _limit_for(self, scope: Scope) -> int:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]  # behind a proxy prefix the path still names the route
        return self.path_limits.get(path, self.max_bytes)

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        request_id = scope.get("state", {}).get("request_id", "")
        body = json.dumps(
            {
                "error": {
                    "type": "payload_too_large",
                    "message": f"request body exceeds the limit of {limit} bytes",
                    "request_id": request_id,
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass
