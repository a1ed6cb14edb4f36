"""The VectorStore protocol: durable documents and chunks, dense + keyword search, filters.

A store owns documents (with versions and content hashes), their chunks and vectors,
and answers `StoreQuery`s inside one tenant's collection. Fusion of the dense and the
keyword legs happens inside the store, so a server that fuses natively (Qdrant's
prefetch + fusion) can do it there.

Example, an implementation outline::

    class MyStore:
        async def upsert(self, scope, documents): ...
        async def search(self, query):
            dense = await self._knn(query.scope, query.vector, query.fusion.candidates)
            keyword = await self._bm25(query.scope, query.text, query.fusion.candidates)
            return fuse(dense, keyword, query.fusion)[: query.k]

Every implementation runs the contract suite in `tests/contract/test_store_contract.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ragserve.types import (
    CollectionStats,
    DocumentInfo,
    DocumentState,
    DocumentWrite,
    Scope,
    ScoredChunk,
    StoreQuery,
    WriteResult,
)


class VectorStore(Protocol):
    dimension: int

    async def document_states(self, scope: Scope, ids: Sequence[str]) -> dict[str, DocumentState]:
        """Hash, version and chunk count of those of `ids` that exist, so unchanged ones skip embedding."""
        ...

    async def upsert(self, scope: Scope, documents: Sequence[DocumentWrite]) -> list[WriteResult]:
        """Write new versions atomically per call: readers see every document old or new, never half."""
        ...

    async def delete(self, scope: Scope, document_id: str) -> bool:
        """Remove a document and every chunk of it. False when it did not exist."""
        ...

    async def get_document(self, scope: Scope, document_id: str) -> DocumentInfo | None: ...

    async def list_documents(self, scope: Scope, *, limit: int = 50, offset: int = 0) -> tuple[list[DocumentInfo], int]:
        """One page of documents ordered by id, and the total count."""
        ...

    async def search(self, query: StoreQuery) -> list[ScoredChunk]:
        """Top `query.k` chunks of the scope for the mode, filters applied inside the search."""
        ...

    async def stats(self, scope: Scope) -> CollectionStats: ...

    async def live_chunks(self, scope: Scope, chunk_ids: Sequence[int]) -> set[int]:
        """Those of `chunk_ids` that still exist in the scope.

        Chunk ids are never reused (a changed document gets new ones), so a cached result is
        current exactly when every chunk it was built from is still live.
        """
        ...

    async def totals(self) -> CollectionStats:
        """Documents and chunks across every tenant and collection (for gauges and /status)."""
        ...

    async def list_collections(self, tenant: str) -> list[str]: ...

    async def drop_collection(self, scope: Scope) -> bool: ...

    async def ping(self) -> None:
        """Raise StoreError when the store cannot serve reads."""
        ...

    async def aclose(self) -> None: ...
