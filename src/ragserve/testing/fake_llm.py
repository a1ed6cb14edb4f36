"""A scripted LLM server on a real socket: OpenAI chat completions and Anthropic Messages.

Tests point the official SDKs at it and script what each request gets: a queue of steps,
consumed one per chat request (`POST /v1/chat/completions` or `POST /v1/messages`), then
the default (a reply citing source [1]). Every request is recorded (path, headers, JSON).

    with FakeLLMServer() as llm:
        llm.script(status(429, retry_after=2), reply("Paris is the capital. [1]"))
        client = AsyncOpenAI(base_url=llm.openai_base_url, api_key="test", max_retries=0)
        ...
        assert llm.calls("/v1/chat/completions") == 2
        assert "Question:" in llm.requests[-1].body["messages"][-1]["content"]

Steps: `reply(text=None, latency_s=0, usage=None, token_interval_s=0)`, `status(code,
retry_after=None, body=None, headers=None)` (the provider's own error JSON),
`context_too_long()`, `reset()` (close without answering), `hang(seconds)`,
`stream_break_after(n)`, `stream_stall_after(n, seconds)`, `stream_error_after(n, code)`,
`malformed_json()`.
Streams (`"stream": true`) send one token per event. The server runs on its own thread
and event loop, so it serves sync and async clients alike. From a shell, with a seeded
mix of failures: `python -m ragserve.testing.fake_llm --port 8099 --fail-rate 0.3`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from ragserve.testing import wire
from ragserve.testing.wire import WireProtocol

OPENAI_CHAT = "/v1/chat/completions"
ANTHROPIC_MESSAGES = "/v1/messages"
MODELS = "/v1/models"
CHAT_PATHS = (OPENAI_CHAT, ANTHROPIC_MESSAGES)


@dataclass(frozen=True, slots=True)
class Reply:
    text: str | None = None  # None: the default answer, built from the request
    latency_s: float = 0.0  # before the response starts
    usage: Mapping[str, int] | None = None  # prompt_tokens, completion_tokens; None: words counted
    token_interval_s: float = 0.0  # between streamed tokens


@dataclass(frozen=True, slots=True)
class Status:
    code: int
    retry_after: float | str | None = None  # seconds, or an HTTP date
    body: Any = None  # None: the provider's own error JSON for `code`; a str is sent as is
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ContextTooLong:
    pass


@dataclass(frozen=True, slots=True)
class Reset:
    pass


@dataclass(frozen=True, slots=True)
class Hang:
    seconds: float


@dataclass(frozen=True, slots=True)
class StreamBreak:
    after: int


@dataclass(frozen=True, slots=True)
class StreamStall:
    after: int
    seconds: float


@dataclass(frozen=True, slots=True)
class StreamError:
    after: int
    code: int


@dataclass(frozen=True, slots=True)
class MalformedJSON:
    pass


Step = Reply | Status | ContextTooLong | Reset | Hang | StreamBreak | StreamStall | StreamError | MalformedJSON


def reply(
    text: str | None = None,
    latency_s: float = 0.0,
    usage: Mapping[str, int] | None = None,
    token_interval_s: float = 0.0,
) -> Reply:
    return Reply(text, latency_s, usage, token_interval_s)


def status(
    code: int, retry_after: float | str | None = None, body: Any = None, headers: Mapping[str, str] | None = None
) -> Status:
    return Status(code, retry_after, body, headers)


def context_too_long() -> ContextTooLong:
    """A 400 in the provider's words for a prompt over the model's window."""
    return ContextTooLong()


def reset() -> Reset:
    return Reset()


def hang(seconds: float = 60.0) -> Hang:
    """Read the request, answer nothing for `seconds`, then close the connection."""
    return Hang(seconds)


def stream_break_after(n_tokens: int) -> StreamBreak:
    """Send `n_tokens` streamed tokens, then cut the connection (non-streamed: half a body)."""
    return StreamBreak(n_tokens)


def stream_stall_after(n_tokens: int, seconds: float) -> StreamStall:
    """Send `n_tokens` tokens, go quiet for `seconds`, then finish (non-streamed: a late reply)."""
    return StreamStall(n_tokens, seconds)


def stream_error_after(n_tokens: int, code: int = 529) -> StreamError:
    """Send `n_tokens` tokens, then the provider's in-stream error event for `code` (non-streamed: that status)."""
    return StreamError(n_tokens, code)


def malformed_json() -> MalformedJSON:
    return MalformedJSON()


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # names lowercased
    body: Any  # the parsed JSON body; None when empty or not JSON
    received_at: float = field(default_factory=time.time)

    @property
    def protocol(self) -> WireProtocol:
        # Anthropic's SDK sends its version header on every call, models listing included.
        return "anthropic" if self.path == ANTHROPIC_MESSAGES or "anthropic-version" in self.headers else "openai"

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


Chooser = Callable[[RecordedRequest], Step]


def random_failures(rate: float, *, latency_s: float = 0.0, token_interval_s: float = 0.0, seed: int = 0) -> Chooser:
    """A default that fails a seeded `rate` of requests with a mix of retryable errors."""
    rng = random.Random(seed)
    failures: tuple[Step, ...] = (
        status(429, retry_after=1),
        status(500),
        status(503),
        reset(),
        stream_break_after(3),
    )

    def choose(request: RecordedRequest) -> Step:
        return (
            rng.choice(failures)
            if rng.random() < rate
            else reply(latency_s=latency_s, token_interval_s=token_interval_s)
        )

    return choose


class FakeLLMServer:
    """The server; `start()`/`stop()` or a `with` block. Thread-safe to script and inspect."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "fake-model",
        default: Step | Chooser | None = None,
    ) -> None:
        self.host = host
        self.port = port  # 0: a free port, known once started
        self.model = model
        self._default: Step | Chooser = default or Reply()
        self._lock = threading.Lock()
        self._steps: collections.deque[Step] = collections.deque()
        self._requests: list[RecordedRequest] = []
        self._calls: collections.Counter[str] = collections.Counter()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    # ------------------------------------------------------------------ scripting

    def script(self, *steps: Step) -> None:
        """Queue `steps`: each chat request takes the next one; when none is left, the default."""
        with self._lock:
            self._steps.extend(steps)

    def set_default(self, default: Step | Chooser) -> None:
        with self._lock:
            self._default = default

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, path: str | None = None) -> int:
        """Requests received on `path` (all paths when None)."""
        with self._lock:
            return self._calls[path] if path is not None else sum(self._calls.values())

    def last(self, path: str | None = None) -> RecordedRequest:
        found = [r for r in self.requests if path is None or r.path == path]
        if not found:
            raise LookupError(f"no request received on {path or 'any path'}")
        return found[-1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url  # the Anthropic SDK adds /v1 itself

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeLLMServer already started")
        self._ready.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._run, name="fake-llm", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("FakeLLMServer did not start in time")
        if self._failure is not None:
            raise RuntimeError(f"FakeLLMServer could not start: {self._failure}") from self._failure
        return self

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); a daemon thread has no one else to tell
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                # Cancelled on stop, or the client left mid-answer: neither is worth a traceback,
                # which asyncio's stream callback would otherwise log for each.
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await self._connection(reader, writer)
            finally:
                handlers.discard(task)
                writer.close()

        server = await asyncio.start_server(on_connect, self.host, self.port, limit=2**24)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    # ------------------------------------------------------------------ HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                request = RecordedRequest(*await wire.read_request(reader))
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                return
            with self._lock:
                self._requests.append(request)
                self._calls[request.path] += 1
            keep_open = await self._respond(request, writer)
            if not keep_open or request.headers.get("connection", "").lower() == "close":
                return

    async def _respond(self, request: RecordedRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must not be reused."""
        protocol = request.protocol
        if request.method == "GET" and request.path == MODELS:
            return await wire.send_json(writer, 200, wire.models_list(protocol, self.model))
        if request.method != "POST" or request.path not in CHAT_PATHS:
            return await wire.send_json(writer, 404, wire.error_body(protocol, 404, f"no route {request.path}"))
        step = self._next_step(request)
        match step:
            case Reset():
                writer.transport.abort()
                return False
            case Hang(seconds):
                await asyncio.sleep(seconds)
                return False
            case Status(code, retry_after, body, headers):
                extra = dict(headers or {})
                if retry_after is not None:
                    extra["retry-after"] = wire.retry_after_value(retry_after)
                payload = wire.error_body(protocol, code) if body is None else body
                return await wire.send_json(writer, code, payload, extra)
            case ContextTooLong():
                return await wire.send_json(writer, 400, wire.context_too_long_body(protocol))
            case MalformedJSON():
                if request.stream:
                    await wire.start_stream(writer)
                    await wire.send_chunk(writer, wire.MALFORMED_EVENT[protocol])
                    await wire.send_chunk(writer, b"")
                    return True
                return await wire.send_raw(writer, 200, b'{"id": "broken", "choices": [', "application/json")
            case StreamError(_, code) if not request.stream:
                return await wire.send_json(writer, code, wire.error_body(protocol, code))
            case Reply() | StreamBreak() | StreamStall() | StreamError():
                return await self._answer(request, step, writer)
        raise AssertionError(f"unknown step {step!r}")

    def _next_step(self, request: RecordedRequest) -> Step:
        with self._lock:
            if self._steps:
                return self._steps.popleft()
            default = self._default
        return default(request) if callable(default) else default

    async def _answer(
        self,
        request: RecordedRequest,
        step: Reply | StreamBreak | StreamStall | StreamError,
        writer: asyncio.StreamWriter,
    ) -> bool:
        replied = step if isinstance(step, Reply) else Reply()
        text = replied.text if replied.text is not None else wire.default_answer(request.body)
        usage = dict(replied.usage or {})
        usage.setdefault("prompt_tokens", max(1, wire.words(wire.prompt_text(request.body))))
        usage.setdefault("completion_tokens", max(1, wire.words(text)))
        shapes = wire.OpenAIWire(self.model) if request.protocol == "openai" else wire.AnthropicWire(self.model)
        await asyncio.sleep(replied.latency_s)
        if not request.stream:
            body = json.dumps(shapes.completion(text, usage)).encode()
            if isinstance(step, StreamStall):
                await asyncio.sleep(step.seconds)
            if isinstance(step, StreamBreak):
                writer.write(wire.head(200, "application/json", {"content-length": str(len(body))}))
                writer.write(body[: len(body) // 2])
                await writer.drain()
                writer.transport.abort()
                return False
            return await wire.send_raw(writer, 200, body, "application/json")
        await wire.start_stream(writer)
        for event in shapes.stream_head(usage):
            await wire.send_chunk(writer, event)
        tokens = re.findall(r"\s*\S+", text)
        cut = step.after if isinstance(step, StreamBreak | StreamStall | StreamError) else len(tokens)
        for sent, token in enumerate(tokens[:cut]):
            if sent:
                await asyncio.sleep(replied.token_interval_s)
            await wire.send_chunk(writer, shapes.stream_token(token))
        if isinstance(step, StreamBreak):
            writer.transport.abort()
            return False
        if isinstance(step, StreamError):
            await wire.send_chunk(writer, wire.error_event(request.protocol, step.code))
            await wire.send_chunk(writer, b"")
            return True
        if isinstance(step, StreamStall):
            await asyncio.sleep(step.seconds)
            for token in tokens[cut:]:
                await wire.send_chunk(writer, shapes.stream_token(token))
        include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
        for event in shapes.stream_tail(usage, include_usage):
            await wire.send_chunk(writer, event)
        await wire.send_chunk(writer, b"")
        return True


# ---------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ragserve.testing.fake_llm",
        description="A fake OpenAI-compatible and Anthropic chat server, failing a seeded share of requests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of chat requests that fail (0-1)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply starts")
    parser.add_argument("--token-interval", type=float, default=0.0, help="seconds between streamed tokens")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0.0 <= args.fail_rate <= 1.0:
        parser.error("--fail-rate must be between 0 and 1")
    chooser = random_failures(
        args.fail_rate, latency_s=args.latency, token_interval_s=args.token_interval, seed=args.seed
    )
    server = FakeLLMServer(host=args.host, port=args.port, model=args.model, default=chooser)
    with server:
        print(
            f"fake LLM on {server.url}: OpenAI base_url {server.openai_base_url}, Anthropic base_url {server.url}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
