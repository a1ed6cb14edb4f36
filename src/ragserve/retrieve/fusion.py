"""Score fusion and diversity: pure functions on plain data."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

K = TypeVar("K", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[tuple[Sequence[K], float]], k: float = 60.0) -> list[tuple[K, float]]:
    """Weighted RRF: each ranking is (ids best-first, weight); score = Σ weight / (k + rank).

    Ranks are 1-based. Ties keep the order of first appearance, so the result is deterministic.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    scores: dict[K, float] = {}
    for ids, weight in rankings:
        if weight == 0:
            continue
        for rank, key in enumerate(ids, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def maximal_marginal_relevance(
    query: npt.NDArray[np.float32],
    candidates: npt.NDArray[np.float32],
    k: int,
    lambda_: float = 0.7,
    relevance: Sequence[float] | None = None,
) -> list[int]:
    """Indices of `k` candidates balancing relevance and novelty (Carbonell & Goldstein, 1998).

    Vectors are assumed L2-normalized. `relevance`, when given, replaces the query-candidate
    cosine (for instance with fused scores rescaled to [0, 1]).
    """
    n = len(candidates)
    if n == 0 or k <= 0:
        return []
    rel = np.asarray(relevance, dtype=np.float32) if relevance is not None else candidates @ query
    sim = candidates @ candidates.T
    chosen: list[int] = []
    best_redundancy = np.full(n, -np.inf, dtype=np.float32)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        redundancy = np.where(np.isfinite(best_redundancy), best_redundancy, 0.0)
        score = lambda_ * rel - (1.0 - lambda_) * redundancy
        score = np.where(available, score, -np.inf)
        pick = int(np.argmax(score))
        chosen.append(pick)
        available[pick] = False
        best_redundancy = np.maximum(best_redundancy, sim[pick])
    return chosen
