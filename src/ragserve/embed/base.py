"""The embedder protocol: the one seam between text and vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    Implementations satisfy this structurally, without inheriting: an in-process model
    (`ragserve.embed.local.LocalEmbedder`), an HTTP client for an embeddings server, or a
    wrapper (a cache, a fallback) that holds another embedder and is itself one.

    The rules every implementation keeps (``tests/contract/test_embedder_contract.py``
    checks them; add a new implementation to its fixture):

    - ``embed_documents`` returns shape ``(len(texts), dimension)``, float32, each row of
      unit length, rows in input order; ``[]`` gives shape ``(0, dimension)``.
    - ``embed_query`` returns shape ``(dimension,)`` and equals, up to float noise, the row
      ``embed_documents`` gives for the same text (this model uses no query prefix).
    - Inputs longer than ``max_tokens`` (special tokens included) are truncated, never
      rejected, so callers chunk to fit rather than rely on an error.
    - Blocking work runs off the event loop; failures raise `ragserve.errors.EmbedderError`.

    A wrapper is a few lines::

        class UpperCasingEmbedder:
            def __init__(self, inner: Embedder) -> None:
                self.inner = inner
                self.model_name, self.dimension = inner.model_name, inner.dimension
                self.max_tokens = inner.max_tokens

            async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
                return await self.inner.embed_documents([t.upper() for t in texts])

            async def embed_query(self, text: str) -> np.ndarray:
                return await self.inner.embed_query(text.upper())

            async def aclose(self) -> None:
                await self.inner.aclose()
    """

    model_name: str
    dimension: int
    max_tokens: int

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for many texts: shape ``(n, dimension)``, rows in input order."""
        ...

    async def embed_query(self, text: str) -> np.ndarray:
        """The vector of one query: shape ``(dimension,)``. Concurrent calls may be batched."""
        ...

    async def aclose(self) -> None:
        """Release threads, sessions and connections; later calls fail."""
        ...
