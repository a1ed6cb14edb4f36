"""Retrieval: score fusion, hybrid search, de-duplication."""
