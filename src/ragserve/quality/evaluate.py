"""Retrieval metrics and a BEIR dataset loader, on plain data.

The metrics follow what BEIR reports (through pytrec_eval, i.e. trec_eval), so numbers
computed here compare with published ones:

- ``ndcg@k`` is trec_eval's ``ndcg_cut.k``: the gain of a document is its relevance
  grade as judged (linear, not ``2**rel - 1``), discounted by ``log2(rank + 1)``; the
  ideal ranking sorts all judged grades of the query, best first, cut at ``k``.
- ``recall@k`` is ``recall.k``: relevant documents (grade > 0) in the top ``k`` over
  all relevant documents of the query, even when there are more than ``k``.
- ``mrr@k`` is BEIR's own: one over the rank of the first relevant document in the
  top ``k``, else 0.

Scores are averaged over the queries in the qrels; a query the run has no ranking for
scores 0 (trec_eval ``-c``), so a system cannot look better by skipping hard queries.

    >>> run = {"q1": {"d1": 0.9, "d2": 0.4}}
    >>> qrels = {"q1": {"d2": 1}}
    >>> evaluate_run(run, qrels)["mrr@10"]
    0.5
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragserve.errors import InvalidInputError

Qrels = dict[str, dict[str, int]]  # query id -> doc id -> relevance grade
Run = dict[str, dict[str, float]]  # query id -> doc id -> score (higher is better)

# Metric name -> cutoffs. The defaults are the figures BEIR and MTEB publish.
DEFAULT_CUTOFFS: Mapping[str, tuple[int, ...]] = {"ndcg": (10,), "recall": (10, 100), "mrr": (10,)}


def _check_k(k: int) -> None:
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}", field="k")


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain of the first ``k`` documents of ``ranked``.

    Gains are the relevance grades themselves; grades at or below 0 count as 0.
    Returns 0.0 when the query has no relevant document.
    """
    _check_k(k)
    ideal_gains = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    if not ideal_gains:
        return 0.0
    # Rank r (1-based) is discounted by log2(r + 1); enumerate is 0-based, hence + 2.
    dcg = sum(max(relevant.get(doc, 0), 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    return dcg / idcg


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Share of the relevant documents (grade > 0) that appear in the first ``k``.

    The denominator is all relevant documents, as in BEIR, so recall@k stays below 1
    when a query has more than ``k`` of them. Returns 0.0 when there are none.
    """
    _check_k(k)
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document within the first ``k``, else 0.0."""
    _check_k(k)
    for rank, doc in enumerate(ranked[:k], start=1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def rank_run(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by score, highest first; equal scores in ascending doc id order.

    The tie-break makes a ranking reproducible. (trec_eval breaks ties by descending
    doc id instead; the two differ only on exact ties.)
    """
    return sorted(scores, key=lambda doc: (-scores[doc], doc))


_METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    ks: Mapping[str, Sequence[int]] = DEFAULT_CUTOFFS,
) -> dict[str, float]:
    """Mean of each metric at each cutoff over the queries in ``qrels``.

    ``ks`` maps a metric name (``ndcg``, ``recall``, ``mrr``) to its cutoffs; the result
    has one key per pair, ``"<metric>@<k>"``, in that order. With the defaults the keys
    are exactly ``ndcg@10``, ``recall@10``, ``recall@100`` and ``mrr@10``. Queries in
    the run but not in the qrels are ignored.
    """
    unknown = sorted(set(ks) - set(_METRICS))
    if unknown:
        raise InvalidInputError(
            f"unknown metric(s) {unknown}; known: {sorted(_METRICS)}",
            field="ks",
        )
    if not qrels:
        raise InvalidInputError("qrels are empty: there is no query to evaluate", field="qrels")
    totals = {f"{name}@{k}": 0.0 for name, cutoffs in ks.items() for k in cutoffs}
    for query_id, relevant in qrels.items():
        ranked = rank_run(run.get(query_id, {}))
        for name, cutoffs in ks.items():
            for k in cutoffs:
                totals[f"{name}@{k}"] += _METRICS[name](ranked, relevant, k)
    return {key: total / len(qrels) for key, total in totals.items()}


@dataclass(slots=True)
class BeirDataset:
    """A BEIR-format dataset: the corpus is read lazily, queries and qrels eagerly.

    ``queries`` holds only the queries judged in ``qrels`` for ``split``.
    """

    corpus_path: Path
    queries: dict[str, str]
    qrels: Qrels
    split: str

    def iter_corpus(self) -> Iterator[dict[str, Any]]:
        """Yield each corpus row as ``{"_id", "title", "text"}`` (title ``""`` when absent)."""
        for line_no, row in _read_jsonl(self.corpus_path):
            if "_id" not in row or not isinstance(row.get("text"), str):
                raise InvalidInputError(f"{self.corpus_path}:{line_no}: a corpus row needs `_id` and `text`")
            yield {"_id": str(row["_id"]), "title": str(row.get("title") or ""), "text": row["text"]}


def load_beir(directory: Path | str, split: str = "test") -> BeirDataset:
    """Load ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` from ``directory``.

    The qrels file is ``query-id <TAB> corpus-id <TAB> score``, with or without a header
    row. Raises `InvalidInputError` naming a missing file or split (and the splits that
    do exist), a malformed line, or a judged query that has no text.

        >>> data = load_beir("data/scifact", split="test")   # doctest: +SKIP
        >>> len(data.queries)                                 # doctest: +SKIP
        300
    """
    root = Path(directory)
    if not root.is_dir():
        raise InvalidInputError(f"BEIR dataset directory not found: {root}")
    corpus_path = root / "corpus.jsonl"
    queries_path = root / "queries.jsonl"
    for required in (corpus_path, queries_path):
        if not required.is_file():
            raise InvalidInputError(f"BEIR dataset {root} has no {required.name}")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise InvalidInputError(
            f"BEIR dataset {root} has no split {split!r} (expected {qrels_path}); "
            f"available splits: {', '.join(available) or 'none'}",
            field="split",
        )

    qrels = _read_qrels(qrels_path)
    texts: dict[str, str] = {}
    for line_no, row in _read_jsonl(queries_path):
        if "_id" not in row or not isinstance(row.get("text"), str):
            raise InvalidInputError(f"{queries_path}:{line_no}: a query row needs `_id` and `text`")
        texts[str(row["_id"])] = row["text"]
    missing = [qid for qid in qrels if qid not in texts]
    if missing:
        raise InvalidInputError(
            f"{len(missing)} query id(s) in {qrels_path} are not in {queries_path}, e.g. {missing[:5]}"
        )
    return BeirDataset(
        corpus_path=corpus_path,
        queries={qid: texts[qid] for qid in qrels},
        qrels=qrels,
        split=split,
    )


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InvalidInputError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, row


def _read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise InvalidInputError(
                    f"{path}:{line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}"
                )
            query_id, doc_id, score = (cell.strip() for cell in row)
            try:
                grade = int(score)
            except ValueError:
                if line_no == 1:  # the header row, e.g. "query-id corpus-id score"
                    continue
                raise InvalidInputError(f"{path}:{line_no}: score {score!r} is not an integer") from None
            qrels.setdefault(query_id, {})[doc_id] = grade
    if not qrels:
        raise InvalidInputError(f"{path} holds no judgements")
    return qrels
