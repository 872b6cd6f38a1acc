"""Ranking metrics as pure functions of a hit matrix.

``hits`` is a (Q, K_max) boolean array: ``hits[q, j]`` says whether the item at 0-based rank j of query q's
top list is one of q's targets. ``n_targets`` (Q,) counts each query's distinct targets. Every metric
returns one value per query; averaging (and gathering across processes) is the caller's business.

For one target per query (leave-one-out) HR@K = Recall@K and NDCG@K = 1 / log2(rank + 1) for the 1-based
rank of the target when rank <= K. With several targets, NDCG@K divides by the ideal DCG over
min(n_targets, K) hits (not by the number of hits, as ComiRec's code does, which overstates NDCG).
"""

from __future__ import annotations

import numpy as np

METRICS = ("HR", "Recall", "NDCG", "MRR")


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))  # rank 1 -> 1, rank 2 -> 1/log2(3), ...


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """1 if any target is in the top k."""
    return np.asarray(hits[:, :k].any(axis=1), dtype=np.float64)


def recall(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Share of the targets found in the top k."""
    return hits[:, :k].sum(axis=1) / np.maximum(n_targets, 1)


def ndcg(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """DCG of the top k over the ideal DCG of min(n_targets, k) hits."""
    disc = _discounts(k)
    dcg = (hits[:, :k] * disc[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_targets, k)]
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)


def mrr(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / (1-based rank of the first target) if it is in the top k, else 0."""
    top = hits[:, :k]
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def compute_metrics(hits: np.ndarray, n_targets: np.ndarray, ks: tuple[int, ...] | list[int],
                    names: tuple[str, ...] = METRICS) -> dict[str, np.ndarray]:
    """Per-query values of every metric in ``names`` at every cut-off in ``ks``: keys like ``"HR@10"``."""
    if hits.shape[1] < max(ks):
        raise ValueError(f"hit matrix has {hits.shape[1]} columns, fewer than the largest cut-off {max(ks)}")
    out: dict[str, np.ndarray] = {}
    for name in names:
        for k in ks:
            if name == "HR":
                out[f"HR@{k}"] = hit_rate(hits, k)
            elif name == "Recall":
                out[f"Recall@{k}"] = recall(hits, n_targets, k)
            elif name == "NDCG":
                out[f"NDCG@{k}"] = ndcg(hits, n_targets, k)
            elif name == "MRR":
                out[f"MRR@{k}"] = mrr(hits, k)
            else:
                raise ValueError(f"unknown metric {name!r}; choose from {METRICS}")
    return out
