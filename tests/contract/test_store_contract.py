"""Runs the VectorStore contract against every implementation; a new backend adds a factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient
from store_contract import CONTRACT, DIM, Check

from ragserve.store.base import VectorStore
from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.store.qdrant import QdrantVectorStore


def embedded_store(tmp_path: Path) -> VectorStore:
    return EmbeddedVectorStore(tmp_path / "store", dimension=DIM, model_name="test")


def qdrant_store(tmp_path: Path) -> VectorStore:
    """Qdrant's in-process local mode: the same client API and query semantics as a server."""
    return QdrantVectorStore(AsyncQdrantClient(location=":memory:"), dimension=DIM, model_name="test")


FACTORIES: dict[str, Callable[[Path], VectorStore]] = {"embedded": embedded_store, "qdrant": qdrant_store}


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    built = FACTORIES[request.param](tmp_path)
    yield built
    await built.aclose()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__)
async def test_store_contract(store: VectorStore, check: Check) -> None:
    await check(store)
