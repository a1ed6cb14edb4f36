"""Traces leave the process by OTLP/HTTP when an endpoint is set: a real server, a real collector port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from servers import running_server

pytestmark = pytest.mark.slow


class Collector:
    """Accepts OTLP/HTTP protobuf exports on /v1/traces and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []  # (trace id, span name, service name)
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        service = next(
                            a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
                        )
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                collector.spans.append((span.trace_id.hex(), span.name, service))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def names_in(self, trace_id: str) -> set[str]:
        with self.lock:
            return {name for tid, name, _ in self.spans if tid == trace_id}


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    yield c
    c.server.shutdown()


def test_a_query_exports_a_trace_with_a_span_per_stage(
    make_data_dir: Callable[[], Path], tmp_path: Path, collector: Collector
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "ragserve-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds between batch exports
    }
    with running_server(make_data_dir(), tmp_path, env=env) as server:
        r = httpx.post(
            f"{server.url}/v1/documents",
            json={"documents": [{"id": "port", "text": "The server listens on port 8000 by default."}]},
            timeout=60,
        )
        assert r.status_code == 201
        incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # W3C traceparent from a caller
        r = httpx.post(
            f"{server.url}/v1/query",
            json={"query": "Which port does the server listen on?"},
            headers={"traceparent": incoming},
            timeout=60,
        )
        assert r.status_code == 200
        trace_id = r.json()["trace_id"]
        assert trace_id == r.headers["x-trace-id"] == "0af7651916cd43dd8448eb211c80319c"  # the caller's trace continues

        expected = {"POST /v1/query", "rag.query", "embed", "retrieve", "dense", "keyword", "fuse", "generate"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not expected <= collector.names_in(trace_id):
            time.sleep(0.2)
        assert expected <= collector.names_in(trace_id), collector.names_in(trace_id)
        assert {service for _, _, service in collector.spans} == {"ragserve-under-test"}
