"""Vector stores: the protocol, the embedded default (SQLite + Tantivy + HNSW)."""
