"""OpenTelemetry traces: a span per request and per stage, exported by OTLP/HTTP when asked.

The core only uses the OpenTelemetry API (`tracer()`), which costs nearly nothing until a
provider is installed. `configure_tracing()` installs the SDK provider once per process so
every request gets a real trace id (logged and returned in `X-Trace-ID`), and adds the
OTLP/HTTP exporter only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific
variable) is set; the exporter reads the standard `OTEL_*` variables itself.
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer, format_trace_id
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_configured = False
_lock = threading.Lock()
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@functools.cache
def tracer() -> Tracer:
    # Made once, on first use: a proxy until `configure_tracing` installs the provider, then delegating to it.
    return trace.get_tracer("ragserve")


def stage_span(name: str, attributes: dict[str, Any] | None = None) -> AbstractContextManager[Span]:
    """A child span for one stage, or nothing when the request's span is not being recorded.

    Without a collector no span is recorded, and skipping the stage spans saves most of
    tracing's cost; the request's own span still carries the trace id for logs.
    """
    if not trace.get_current_span().is_recording():
        return nullcontext(INVALID_SPAN)
    return tracer().start_as_current_span(name, attributes=attributes)


def exporting() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def configure_tracing() -> None:
    """Install the SDK tracer provider (idempotent); export over OTLP/HTTP when an endpoint is set."""
    global _configured
    with _lock:
        if _configured or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

        from ragserve import __version__

        resource = Resource.create(
            {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "ragserve"), "service.version": __version__}
        )
        # Without a collector nothing is recorded, but every span still gets real ids, so trace
        # ids reach logs and responses at a fraction of the cost of recording spans nobody reads.
        sampler = ParentBased(ALWAYS_ON) if exporting() else ALWAYS_OFF
        provider = TracerProvider(resource=resource, sampler=sampler)
        if exporting():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _configured = True


def shutdown_tracing() -> None:
    """Flush spans still queued for export (at process exit)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


class TracingMiddleware:
    """A server span around each HTTP request, continuing an incoming W3C `traceparent`.

    The span is named after the route template once routing has matched (bounded names);
    the trace id goes back to the client in `X-Trace-ID`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with tracer().start_as_current_span(
            f"{method} {scope['path']}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            trace_id = current_trace_id()
            status = 500

            async def send_with_trace(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    if trace_id:
                        message["headers"] = [*message.get("headers", []), (b"x-trace-id", trace_id.encode())]
                await send(message)

            try:
                await self.app(scope, receive, send_with_trace)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
