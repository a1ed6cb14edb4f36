import numpy as np
import pytest

from ragserve.retrieve.fusion import maximal_marginal_relevance, reciprocal_rank_fusion


def test_rrf_hand_computed_scores() -> None:
    # k=60: "b" is 2nd in the first list and 1st in the second: 1/62 + 1/61.
    fused = dict(reciprocal_rank_fusion([(["a", "b"], 1.0), (["b", "c"], 1.0)], k=60))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["c"] == pytest.approx(1 / 62)


def test_rrf_orders_by_fused_score_and_agreement_wins() -> None:
    fused = reciprocal_rank_fusion([(["a", "b", "c"], 1.0), (["c", "b", "a"], 1.0), (["b"], 1.0)])
    assert fused[0][0] == "b"


def test_rrf_weights_shift_the_balance() -> None:
    dense_first = reciprocal_rank_fusion([(["d"], 2.0), (["k"], 1.0)], k=10)
    keyword_first = reciprocal_rank_fusion([(["d"], 1.0), (["k"], 2.0)], k=10)
    assert dense_first[0][0] == "d"
    assert keyword_first[0][0] == "k"
    assert dense_first[0][1] == pytest.approx(2 / 11)


def test_rrf_zero_weight_leg_is_ignored_and_ties_are_stable() -> None:
    fused = reciprocal_rank_fusion([(["x", "y"], 0.0), (["p", "q"], 1.0), (["q", "p"], 1.0)])
    assert [key for key, _ in fused] == ["p", "q"]
    assert all(key not in ("x", "y") for key, _ in fused)


def test_rrf_rejects_non_positive_k() -> None:
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([(["a"], 1.0)], k=0)


def test_rrf_empty_inputs() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([([], 1.0)]) == []


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_mmr_prefers_a_distinct_candidate_over_a_near_duplicate() -> None:
    query = _unit(1, 0, 0)
    candidates = np.stack([_unit(1, 0.1, 0), _unit(1, 0.12, 0), _unit(0.8, 0, 0.6)])
    assert maximal_marginal_relevance(query, candidates, k=2, lambda_=0.5) == [0, 2]
    # Pure relevance keeps the similarity order.
    assert maximal_marginal_relevance(query, candidates, k=2, lambda_=1.0) == [0, 1]


def test_mmr_edge_cases() -> None:
    query = _unit(1, 0)
    assert maximal_marginal_relevance(query, np.empty((0, 2), dtype=np.float32), k=3) == []
    picks = maximal_marginal_relevance(query, np.stack([_unit(1, 0), _unit(0, 1)]), k=5)
    assert sorted(picks) == [0, 1]
