"""The Qdrant VectorStore, for deployments that outgrow one machine's embedded store.

`store` holds the protocol implementation, `search` the queries, `schema` the layout in
Qdrant, `plans` what a write puts there, `records` the document records, `sparse` the BM25
weighting of the sparse vectors.
"""

from ragserve.store.qdrant.plans import RestoredDocument
from ragserve.store.qdrant.store import QdrantVectorStore, open_client

__all__ = ["QdrantVectorStore", "RestoredDocument", "open_client"]
