"""Measuring retrieval and answer quality: IR metrics on BEIR-format datasets, and the
signals that watch a running service (feedback, drift, cost).

`ragserve.quality.evaluate` holds the pure metric functions (nDCG, recall, MRR) and the
BEIR loader that `ragserve eval` runs on.
"""
