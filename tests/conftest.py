"""Shared fixtures: one embedder model cache and one RAG per test session.

Loading the model takes seconds and its first ONNX export tens of seconds, so every data
directory made here links to one model cache, and tests that need a RAG share one (they
stay independent by writing to collections of their own).
"""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import secrets_registry
from ragserve.build import build_embedder
from ragserve.rag import RAG
from ragserve.settings import Settings
from ragserve.testing.fake_llm import FakeLLMServer
from ragserve.testing.redis_process import RedisProcess


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory's `models/` folder with the embedder exported into it, once."""
    root = tmp_path_factory.mktemp("model-cache")
    build_embedder(Settings(data_dir=root))
    return root / "models"


@pytest.fixture(scope="session")
def make_data_dir(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Callable[[], Path]:
    """Makes a fresh, empty data directory that reuses the session's model cache."""

    def make() -> Path:
        path = tmp_path_factory.mktemp("data")
        (path / "models").symlink_to(model_cache, target_is_directory=True)
        return path

    return make


@pytest.fixture(scope="session")
async def shared_rag(make_data_dir: Callable[[], Path]) -> AsyncIterator[RAG]:
    async with await RAG.from_settings(Settings(data_dir=make_data_dir())) as rag:
        yield rag


@pytest.fixture
def collection() -> str:
    """A collection name no other test uses."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A scripted OpenAI/Anthropic chat server on a free local port (`ragserve.testing.fake_llm`)."""
    with FakeLLMServer() as server:
        yield server


# ------------------------------------------------------------------ Redis


def _redis_process_or_skip() -> RedisProcess:
    try:
        return RedisProcess()
    except FileNotFoundError:
        pytest.skip("redis-server is not installed; install it (apt-get install redis-server) to run the Redis tests")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL of a private redis-server shared by the session (never the machine's own on 6379).

    Tests stay independent by using their own key prefix (`cache_prefix`); to kill or freeze
    a server, use `redis_process`, which is a test's own.
    """
    with _redis_process_or_skip() as server:
        yield server.url


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    """A private redis-server for this test alone: `.url`, `.kill()`, `.stop()`, `.start()` (same port, empty),
    `.pause()` / `.resume()` (SIGSTOP / SIGCONT). Gone after the test."""
    with _redis_process_or_skip() as server:
        yield server


@pytest.fixture
def cache_prefix() -> str:
    """A Redis key prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:12] + ":"


# ------------------------------------------------------------------ secrets never in logs

_log_capture = secrets_registry.CaptureHandler()


def pytest_sessionstart(session: pytest.Session) -> None:
    secrets_registry.install(_log_capture)


@pytest.fixture(autouse=True)
def _capture_logs() -> None:
    """Every test's log records reach the session's capture, even if something took its handler off the root."""
    secrets_registry.install(_log_capture)


@pytest.fixture(scope="session")
def admin_api_key() -> str:
    """A bootstrap admin key (`RAGSERVE_ADMIN_API_KEY`) for the session, registered as a secret."""
    return secrets_registry.register("adm-" + secrets.token_urlsafe(32))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No secret appears in any log line the whole test suite produced: scan them all; a leak fails the session."""
    lines = [*_log_capture.lines, *secrets_registry.file_lines(secrets_registry.LOG_FILES)]
    leaks = secrets_registry.scan(lines, secrets_registry.registered())
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def write(text: str) -> None:
        if reporter is not None:
            reporter.write_line(text, red=True)
        else:
            print(text, file=sys.stderr)

    write("")
    write(f"SECRETS IN LOGS: {len(leaks)} of {len(lines)} log lines hold a secret (masked below)")
    for leak in leaks[:100]:
        write(f"  {leak}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
