"""BM25 as Qdrant sparse vectors: our tokenizer and term statistics, Qdrant's IDF.

BM25 scores a chunk as Σ idf(t) · tf_part(t), and only the IDF part depends on the whole
corpus at query time. So a chunk's sparse vector carries the term-frequency part, saturated
and length-normalised as in BM25 (k1, b against the average chunk length of its collection,
which the store tracks), and the collection's sparse vector config sets `Modifier.IDF`, so
Qdrant multiplies in IDF from its live statistics when it answers. A query vector is then
one weight per distinct query term.

Terms come from `ragserve.llm.text.terms` (lowercased, stopwords dropped, stemmed), so
"running" finds "runs" as it does in the embedded store, and user text is never query syntax:
it is tokenized, not parsed. A term's dimension is a stable 31-bit hash of the term, the same
in every process and release, so no vocabulary has to be stored or shared; two terms that
collide (rare in 2^31 slots) simply add up, as in any hashed feature space.

The length normalisation uses the average known when the chunk is written; older chunks keep
the average of their time. Lucene recomputes it per segment; here it settles as a collection
grows, and the IDF part, the one that matters most, is always current.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from ragserve.llm.text import terms

K1 = 1.2  # the BM25 defaults, as Tantivy uses them
B = 0.75
_INDEX_MASK = (1 << 31) - 1


def term_index(term: str) -> int:
    """The sparse dimension of `term`: 31 bits of its BLAKE2b digest (stable across processes, unlike hash())."""
    digest = hashlib.blake2b(term.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _INDEX_MASK


@dataclass(frozen=True, slots=True)
class SparseTerms:
    """Term counts of one text, and its length in terms (BM25's document length)."""

    counts: dict[int, int]
    length: int


def analyze(text: str) -> SparseTerms:
    found = terms(text)
    counts: Counter[int] = Counter(term_index(t) for t in found)
    return SparseTerms(dict(counts), len(found))


def document_weights(doc: SparseTerms, average_length: float) -> tuple[list[int], list[float]]:
    """Indices and BM25 term-frequency weights, tf·(k1+1) / (tf + k1·(1 − b + b·len/avg))."""
    norm = K1 * (1.0 - B + B * doc.length / max(average_length, 1.0))
    indices = sorted(doc.counts)
    return indices, [doc.counts[i] * (K1 + 1.0) / (doc.counts[i] + norm) for i in indices]


def query_weights(text: str) -> tuple[list[int], list[float]]:
    """One unit weight per distinct query term (Qdrant applies IDF); empty when nothing is searchable."""
    indices = sorted({term_index(t) for t in terms(text)})
    return indices, [1.0] * len(indices)
