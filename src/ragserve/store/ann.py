"""The dense leg of the embedded store: one in-memory HNSW graph (hnswlib) per collection.

Each process keeps its own graphs, caught up from SQLite's change log; snapshots on disk
only shorten start-up. hnswlib was chosen by measurement (bench/ann_choice.py, 100k x 384
normalized vectors on 2 cores): 2.5x faster to build than usearch and ~2x lower query
latency at the same recall.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class HnswParams:
    m: int = 16
    ef_construction: int = 100
    ef_search: int = 100


class CollectionGraph:
    """One collection's HNSW graph. Labels are SQLite chunk ids. Not thread-safe by itself."""

    def __init__(self, dimension: int, params: HnswParams, index: hnswlib.Index | None = None) -> None:
        self.dimension = dimension
        self._params = params
        if index is None:
            index = hnswlib.Index(space="ip", dim=dimension)
            index.init_index(
                max_elements=1024,
                ef_construction=params.ef_construction,
                M=params.m,
            )
        index.set_ef(params.ef_search)
        self._index = index
        # hnswlib does not report how many labels are marked deleted; we count them.
        self.deleted = 0

    @property
    def live(self) -> int:
        return int(self._index.get_current_count()) - self.deleted

    def add(self, ids: npt.NDArray[np.int64], vectors: Vectors) -> None:
        if not len(ids):
            return
        needed = self._index.get_current_count() + len(ids)
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, capacity * 2))
        self._index.add_items(vectors, ids, num_threads=-1)

    def delete_range(self, low: int, high: int) -> None:
        labels = self._index.get_ids_list()
        for label in labels if high - low > len(labels) else range(low, high + 1):
            if low <= label <= high:
                try:
                    self._index.mark_deleted(label)
                    self.deleted += 1
                except RuntimeError:
                    pass  # not present, or already deleted: replaying a change is harmless

    def search(self, vector: Vectors, k: int, allowed: Callable[[int], bool] | None = None) -> list[tuple[int, float]]:
        k = min(k, self.live)
        if k <= 0:
            return []
        self._index.set_ef(max(self._params.ef_search, k))
        labels, distances = self._index.knn_query(vector, k=k, filter=allowed)
        return [(int(label), 1.0 - float(d)) for label, d in zip(labels[0], distances[0], strict=True)]

    def vectors(self, ids: Iterable[int]) -> Vectors:
        return np.asarray(self._index.get_items(list(ids)), dtype=np.float32)

    def save(self, path: Path, seq: int) -> None:
        """Snapshot atomically: the graph file and its change-log position are renamed into place."""
        tmp = path.with_suffix(".tmp")
        self._index.save_index(str(tmp))
        os.replace(tmp, path)
        meta = path.with_suffix(".json")
        meta_tmp = meta.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps({"seq": seq, "deleted": self.deleted, "dim": self.dimension}))
        os.replace(meta_tmp, meta)

    @classmethod
    def load(cls, path: Path, dimension: int, params: HnswParams) -> tuple[CollectionGraph, int] | None:
        """A snapshot and its change-log position, or None when absent or unreadable."""
        meta_path = path.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
            if int(meta["dim"]) != dimension:
                return None
            index = hnswlib.Index(space="ip", dim=dimension)
            index.load_index(str(path))
            graph = cls(dimension, params, index)
            graph.deleted = int(meta["deleted"])
            return graph, int(meta["seq"])
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
