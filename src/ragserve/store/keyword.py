"""The BM25 leg of the embedded store: one Tantivy index on disk, shared by every process.

The index is derived from SQLite's change log. It records the last change it applied in
a `meta` document committed together with the changes, so a searcher always knows
exactly which state of the log it reflects.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tantivy

ANALYZER = "ragserve_en"
# User text is never query syntax. Everything but letters and digits becomes a space: that
# removes the query language's operators, and also stops "RAGSERVE_PORT" from turning into
# a phrase query, which needs positions the body field does not index.
_QUERY_SYNTAX = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class KeywordDoc:
    chunk_id: int
    collection_id: int
    body: str
    tags: Sequence[str]


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("chunk_id", stored=True, indexed=True, fast=True)
    builder.add_unsigned_field("seq", stored=True)
    builder.add_text_field("kind", tokenizer_name="raw")
    builder.add_text_field("collection", tokenizer_name="raw")
    builder.add_text_field("tags", tokenizer_name="raw")
    builder.add_text_field("body", tokenizer_name=ANALYZER, index_option="freq")
    return builder.build()


def _analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def collection_term(collection_id: int) -> str:
    return f"c{collection_id}"


class TantivyKeywordIndex:
    """BM25 search over chunk text, scoped by collection and filtered by tags, inside the query."""

    def __init__(self, path: Path, writer_heap_bytes: int = 64_000_000) -> None:
        self._path = path
        self._heap = writer_heap_bytes
        self._schema = _schema()
        self._index = self._open()
        searcher = self._index.searcher()
        # The searcher and its change-log position are swapped as one attribute, so a reader
        # that checks `seq` before and after a search knows which state it searched.
        self._current = (searcher, self._read_seq(searcher))

    def _open(self) -> tantivy.Index:
        self._path.mkdir(parents=True, exist_ok=True)
        index = tantivy.Index(self._schema, path=str(self._path), reuse=True)
        index.register_tokenizer(ANALYZER, _analyzer())
        return index

    def reset(self) -> None:
        """Throw the index away (it is derived state) and start empty."""
        shutil.rmtree(self._path, ignore_errors=True)
        self._index = self._open()
        self._current = (self._index.searcher(), 0)

    @property
    def seq(self) -> int:
        """The change-log position of the searcher in use."""
        return self._current[1]

    def _read_seq(self, searcher: tantivy.Searcher) -> int:
        query = tantivy.Query.term_query(self._schema, "kind", "meta")
        hits = searcher.search(query, limit=1, count=False).hits
        if not hits:
            return 0
        return int(searcher.doc(hits[0][1]).to_dict()["seq"][0])

    def refresh(self) -> int:
        """Load the newest committed state and return its change-log position."""
        self._index.reload()
        searcher = self._index.searcher()
        seq = self._read_seq(searcher)
        self._current = (searcher, seq)
        return seq

    def apply(
        self,
        seq: int,
        adds: Iterable[KeywordDoc],
        deleted_ranges: Iterable[tuple[int, int]],
        dropped_collections: Iterable[int] = (),
    ) -> None:
        """Apply changes up to `seq` in one commit. Idempotent: replaying a range is harmless.

        The caller holds the store's inter-process write lock, so this is the only writer.
        """
        writer = self._index.writer(heap_size=self._heap, num_threads=1)
        try:
            for collection_id in dropped_collections:
                writer.delete_documents_by_term("collection", collection_term(collection_id))
            for low, high in deleted_ranges:
                writer.delete_documents_by_query(self._chunk_range(low, high))
            for doc in adds:
                # Delete first so a replayed add never leaves a duplicate.
                writer.delete_documents_by_term("chunk_id", doc.chunk_id)
                entry = tantivy.Document()
                entry.add_unsigned("chunk_id", doc.chunk_id)
                entry.add_text("kind", "chunk")
                entry.add_text("collection", collection_term(doc.collection_id))
                for tag in doc.tags:
                    entry.add_text("tags", tag)
                entry.add_text("body", doc.body)
                writer.add_document(entry)
            writer.delete_documents_by_term("kind", "meta")
            meta = tantivy.Document()
            meta.add_text("kind", "meta")
            meta.add_unsigned("seq", seq)
            writer.add_document(meta)
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            # Releases Tantivy's own writer lock so the next process can write.
            writer.wait_merging_threads()

    def _chunk_range(self, low: int, high: int) -> tantivy.Query:
        return tantivy.Query.range_query(
            self._schema, "chunk_id", tantivy.FieldType.Unsigned, low, high, use_inverted_index=True
        )

    def search(
        self, text: str, collection_id: int, tag_groups: Sequence[Sequence[str]], limit: int
    ) -> list[tuple[int, float]]:
        """Top `limit` (chunk id, BM25 score). Each tag group is an OR; groups are ANDed."""
        cleaned = _QUERY_SYNTAX.sub(" ", text).lower()  # lower: "AND", "OR", "NOT" are operators
        if not cleaned.strip():
            return []
        text_query, _errors = self._index.parse_query_lenient(cleaned, ["body"])
        clauses: list[tuple[Any, tantivy.Query]] = [
            (tantivy.Occur.Must, text_query),
            (tantivy.Occur.Must, self._const(self._term("collection", collection_term(collection_id)))),
        ]
        for group in tag_groups:
            terms = [self._term("tags", tag) for tag in group]
            either = (
                terms[0] if len(terms) == 1 else tantivy.Query.boolean_query([(tantivy.Occur.Should, t) for t in terms])
            )
            clauses.append((tantivy.Occur.Must, self._const(either)))
        searcher = self._current[0]
        hits = searcher.search(tantivy.Query.boolean_query(clauses), limit=limit, count=False).hits
        if not hits:
            return []
        ids = searcher.fast_field_values("chunk_id", [address for _, address in hits])
        return [(int(cid), float(score)) for (score, _), cid in zip(hits, ids, strict=True) if cid is not None]

    def _term(self, field: str, value: str) -> tantivy.Query:
        return tantivy.Query.term_query(self._schema, field, value, index_option="basic")

    @staticmethod
    def _const(query: tantivy.Query) -> tantivy.Query:
        # Scope and filters must not add to the BM25 score.
        return tantivy.Query.const_score_query(query, 0.0)
