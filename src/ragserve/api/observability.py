"""Per-request metrics and the access log, as one pure ASGI middleware."""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi.routing import iter_route_contexts
from starlette.datastructures import State
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragserve.observability.logging import query_fields
from ragserve.observability.metrics import get_metrics
from ragserve.observability.tracing import current_trace_id
from ragserve.settings import Settings
from ragserve.types import Answer

UNMATCHED = "unmatched"
# Probes and scrapes arrive every few seconds: logged at debug level while they succeed.
QUIET_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/status", "/metrics"})


class ObservabilityMiddleware:
    """Counts and times each HTTP request by route template and writes one access-log line.

    Latency runs to the last byte of the response body handed to the server, streamed
    bodies included. The counters move before that last byte is sent, so a client that
    has read a response can already see it counted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.stdlib.get_logger("ragserve.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        trace_id: str | None = None
        seconds: float | None = None
        endpoint = UNMATCHED

        def finish(final_status: int) -> float:
            nonlocal seconds, endpoint
            if seconds is None:
                seconds = time.perf_counter() - started
                endpoint = route_template(scope)
                get_metrics().observe_request(endpoint, final_status, seconds)
            return seconds

        async def observed_send(message: Message) -> None:
            nonlocal status, trace_id
            if message["type"] == "http.response.start":
                status = message["status"]
                # Read here, inside the app's context, so a tracing middleware on either side of us counts.
                trace_id = current_trace_id()
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and status:
                finish(status)
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            failed = True
            raise
        finally:
            # No response at all: the app raised (the server error handler answers 500) or the client left.
            final_status = status or (500 if failed else 499)
            elapsed = finish(final_status)
            self._log(scope, endpoint, final_status, elapsed, trace_id or current_trace_id())

    def _log(self, scope: Scope, endpoint: str, status: int, seconds: float, trace_id: str | None) -> None:
        quiet = scope["path"] in QUIET_PATHS and status < 400
        fields: dict[str, Any] = {
            "request_id": scope.get("state", {}).get("request_id"),
            "trace_id": trace_id,
            "method": scope["method"],
            "route": endpoint,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        fields.update(scope.get("state", {}).get("log_fields", {}))
        if quiet:
            self.log.debug("request", **fields)
        else:
            self.log.info("request", **fields)


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/documents/{document_id}`), or "unmatched"."""
    route = scope.get("route")
    if route is None:
        # A middleware inside us may have handed the router a copy of the scope, so the router
        # marked only the copy; match again against the app's routes, as routing does.
        return _match(scope)
    # `path_format` drops convertors: `/v1/documents/{document_id}`, not `{document_id:path}`.
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def _match(scope: Scope) -> str:
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
    if not routes:
        return UNMATCHED
    partial = None
    for context in iter_route_contexts(routes):
        match, _ = context.original_route.matches(scope)
        if match is Match.FULL:
            return context.path_format or UNMATCHED
        if match is Match.PARTIAL and partial is None:
            partial = context.path_format
    return partial or UNMATCHED


def record_answer(state: State, settings: Settings, query: str, answer: Answer) -> None:
    """Stage timings into `rag_stage_duration_seconds`; what the answer was joins the request's access line.

    One line per request, not two: the query (as a hash unless RAGSERVE_LOG_QUERIES), who
    answered, whether it was cached or degraded, and the stage timings.
    """
    get_metrics().observe_stages(answer.timings_ms)
    state.log_fields = {
        **query_fields(query, settings),
        "provider": answer.provider,
        "answered": answer.answered,
        "citations": len(answer.citations),
        "cached": answer.cached,
        "degraded": answer.degraded,
        "timings_ms": answer.timings_ms,
    }


def record_stream_error(exc: BaseException) -> None:
    """A failure after a stream's first event has no error response of its own; count it here."""
    get_metrics().errors.labels(type=getattr(exc, "type", "internal_error")).inc()
