"""Retrieval metrics against hand-computed values, and the BEIR loader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ragserve.errors import InvalidInputError
from ragserve.quality.evaluate import (
    evaluate_run,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    rank_run,
    recall_at_k,
)

SCIFACT = Path("/work/shared/data/scifact")


# --- nDCG ---------------------------------------------------------------------------


def test_ndcg_binary_relevance_by_hand() -> None:
    # ranked a, b, c; b and c relevant (grade 1).
    # DCG  = 0/log2(2) + 1/log2(3) + 1/log2(4) = 0.6309 + 0.5      = 1.1309
    # IDCG = 1/log2(2) + 1/log2(3)             = 1 + 0.6309        = 1.6309
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(["a", "b", "c"], {"b": 1, "c": 1}, k=10) == pytest.approx(dcg / idcg)
    assert dcg / idcg == pytest.approx(0.6934, abs=1e-4)


def test_ndcg_perfect_ranking_is_one() -> None:
    assert ndcg_at_k(["a", "b", "x"], {"a": 2, "b": 1}) == pytest.approx(1.0)


def test_ndcg_no_relevant_retrieved_is_zero() -> None:
    assert ndcg_at_k(["x", "y"], {"a": 1}) == 0.0
    assert ndcg_at_k([], {"a": 1}) == 0.0


def test_ndcg_without_relevant_documents_is_zero() -> None:
    assert ndcg_at_k(["a"], {}) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}) == 0.0


def test_ndcg_graded_uses_linear_gains() -> None:
    # ranked b, a; a has grade 2, b grade 1. Gains are the grades (pytrec_eval ndcg_cut).
    # DCG  = 1/log2(2) + 2/log2(3) = 1 + 1.2619 = 2.2619
    # IDCG = 2/log2(2) + 1/log2(3) = 2 + 0.6309 = 2.6309
    # (with 2^rel - 1 gains it would be (1 + 3/log2 3) / (3 + 1/log2 3) = 0.8155 instead)
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}) == pytest.approx(expected)
    assert expected == pytest.approx(0.8597, abs=1e-4)


def test_ndcg_ideal_is_capped_at_k() -> None:
    # Three relevant docs, k = 2, the top two retrieved are relevant: the ideal holds only
    # two gains too, so this is a perfect score at that cutoff.
    assert ndcg_at_k(["a", "b", "c"], {"a": 1, "b": 1, "c": 1}, k=2) == pytest.approx(1.0)
    # Only one relevant doc in the top 2 of 3 relevant: DCG = 1, IDCG = 1 + 1/log2(3).
    assert ndcg_at_k(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, k=2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_ignores_documents_below_the_cutoff() -> None:
    assert ndcg_at_k(["x", "a"], {"a": 1}, k=1) == 0.0


# --- recall and MRR ---------------------------------------------------------------


def test_recall_counts_relevant_in_top_k() -> None:
    # relevant {a, b, c} (d is judged 0, so not relevant); top 3 holds a and c: 2/3.
    relevant = {"a": 1, "b": 1, "c": 2, "d": 0}
    assert recall_at_k(["a", "d", "c", "b"], relevant, k=3) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "d", "c", "b"], relevant, k=4) == pytest.approx(1.0)


def test_recall_with_more_relevant_than_k_stays_below_one() -> None:
    # 4 relevant, k = 2, both retrieved docs relevant: 2/4 (BEIR does not cap the denominator).
    relevant = {"a": 1, "b": 1, "c": 1, "d": 1}
    assert recall_at_k(["a", "b", "c", "d"], relevant, k=2) == pytest.approx(0.5)


def test_recall_without_relevant_documents_is_zero() -> None:
    assert recall_at_k(["a"], {"a": 0}, k=10) == 0.0


def test_mrr_is_reciprocal_rank_of_first_relevant() -> None:
    assert mrr_at_k(["x", "y", "a", "b"], {"a": 1, "b": 1}, k=10) == pytest.approx(1 / 3)
    assert mrr_at_k(["a"], {"a": 1}, k=10) == 1.0
    # first relevant at rank 3, beyond k = 2
    assert mrr_at_k(["x", "y", "a"], {"a": 1}, k=2) == 0.0
    # grade 0 is not relevant
    assert mrr_at_k(["z", "a"], {"z": 0, "a": 1}, k=10) == pytest.approx(0.5)


def test_k_below_one_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        ndcg_at_k(["a"], {"a": 1}, k=0)


# --- ranking and averaging ----------------------------------------------------------


def test_rank_run_sorts_by_score_then_doc_id() -> None:
    assert rank_run({"b": 0.5, "a": 0.5, "c": 0.9, "d": -1.0}) == ["c", "a", "b", "d"]
    assert rank_run({}) == []


def test_evaluate_run_keys_and_averaging_with_a_missing_query() -> None:
    qrels = {
        "q1": {"a": 1},  # run ranks a first: every metric 1.0
        "q2": {"b": 1},  # run ranks b second: ndcg 1/log2(3), recall 1, mrr 1/2
        "q3": {"c": 1},  # not in the run: every metric 0
    }
    run = {
        "q1": {"a": 3.0, "x": 1.0},
        "q2": {"y": 2.0, "b": 1.0},
        "q9": {"c": 1.0},  # not judged: ignored
    }
    scores = evaluate_run(run, qrels)
    assert list(scores) == ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
    assert scores["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 0) / 3)
    assert scores["recall@10"] == pytest.approx(2 / 3)
    assert scores["recall@100"] == pytest.approx(2 / 3)
    assert scores["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_evaluate_run_custom_cutoffs() -> None:
    scores = evaluate_run({"q": {"x": 2.0, "a": 1.0}}, {"q": {"a": 1}}, ks={"recall": (1, 2)})
    assert scores == {"recall@1": 0.0, "recall@2": 1.0}


def test_evaluate_run_rejects_unknown_metric_and_empty_qrels() -> None:
    with pytest.raises(InvalidInputError, match="map"):
        evaluate_run({}, {"q": {"a": 1}}, ks={"map": (10,)})
    with pytest.raises(InvalidInputError, match="empty"):
        evaluate_run({}, {})


# --- BEIR loader ----------------------------------------------------------------------


def write_beir(root: Path, *, header: bool) -> Path:
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Tantivy", "text": "A full-text search library."},
        {"_id": "d2", "text": "HNSW is a graph index."},  # no title
    ]
    queries = [
        {"_id": "q1", "text": "what is tantivy"},
        {"_id": "q2", "text": "what is hnsw"},
        {"_id": "q3", "text": "a training query"},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    head = "query-id\tcorpus-id\tscore\n" if header else ""
    (root / "qrels" / "test.tsv").write_text(head + "q1\td1\t1\nq2\td2\t2\nq2\td1\t0\n", encoding="utf-8")
    (root / "qrels" / "train.tsv").write_text(head + "q3\td1\t1\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("header", [True, False])
def test_load_beir_tiny_dataset(tmp_path: Path, header: bool) -> None:
    data = load_beir(write_beir(tmp_path / "tiny", header=header), split="test")
    assert data.split == "test"
    assert data.queries == {"q1": "what is tantivy", "q2": "what is hnsw"}  # q3 is train only
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}}
    assert list(data.iter_corpus()) == [
        {"_id": "d1", "title": "Tantivy", "text": "A full-text search library."},
        {"_id": "d2", "title": "", "text": "HNSW is a graph index."},
    ]
    assert load_beir(str(tmp_path / "tiny"), split="train").queries == {"q3": "a training query"}


def test_load_beir_missing_split_names_available_ones(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "tiny", header=True)
    with pytest.raises(InvalidInputError, match=r"no split 'dev'.*available splits: test, train"):
        load_beir(root, split="dev")


def test_load_beir_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_beir(tmp_path / "nowhere")
    root = write_beir(tmp_path / "tiny", header=False)
    (root / "queries.jsonl").unlink()
    with pytest.raises(InvalidInputError, match=r"queries\.jsonl"):
        load_beir(root)


def test_load_beir_judged_query_without_text(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "tiny", header=False)
    with (root / "qrels" / "test.tsv").open("a", encoding="utf-8") as qrels:
        qrels.write("q404\td1\t1\n")
    with pytest.raises(InvalidInputError, match="q404"):
        load_beir(root)


def test_load_beir_malformed_qrels_line(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "tiny", header=True)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tyes\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"test\.tsv:2"):
        load_beir(root)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="SciFact is not present")
def test_load_beir_scifact_splits() -> None:
    test = load_beir(SCIFACT, split="test")
    assert len(test.queries) == 300
    assert set(test.queries) == set(test.qrels)
    assert sum(len(docs) for docs in test.qrels.values()) == 339
    train = load_beir(SCIFACT, split="train")
    assert len(train.queries) == 809
    assert not set(train.queries) & set(test.queries)
    first = next(test.iter_corpus())
    assert set(first) == {"_id", "title", "text"}
    with pytest.raises(InvalidInputError, match="available splits: test, train"):
        load_beir(SCIFACT, split="dev")
