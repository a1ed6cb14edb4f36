"""Shared fixtures: one embedder model cache and one RAG per test session.

Loading the model takes seconds and its first ONNX export tens of seconds, so every data
directory made here links to one model cache, and tests that need a RAG share one (they
stay independent by writing to collections of their own).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

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
