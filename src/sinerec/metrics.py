"""Ranking metrics as pure functions of a hit matrix.

``hits`` is a (Q, K_max) boolean array: ``hits[q, j]`` says whether the item at 0-based rank j of query q's
top list is one of q's targets. ``n_targets`` (Q,) counts each query's distinct targets. Every metric
returns one value per query; averaging (and gathering across processes) is the caller's business.

For one target per query (leave-one-out) HR@K = Recall@K and NDCG@K = 1 / log2(rank + 1) for the 1-based
rank of the target when rank <= K. With several targets, NDCG@K divides by the ideal DCG over
min(n_targets, K) hits (not by the number of hits, as ComiRec's code does, which overstates NDCG).

:data:`METRICS` is the table of metrics: name -> :class:`Metric`, in display order. The evaluator computes
from it, ``EvalConfig`` validates metric names against it and the CLI orders its table by it. Adding a
metric is one pure function plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_METRICS", "METRICS", "Metric", "compute_metrics", "hit_rate", "mrr", "ndcg", "recall"]


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


MetricFunction = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
"""(hits (Q, >= k) bool, n_targets (Q,), k) -> (Q,) float64, one value per query."""


@dataclass(frozen=True)
class Metric:
    """One entry of the metric table."""

    function: MetricFunction
    """The per-query values at cut-off k (see :data:`MetricFunction`)."""
    description: str
    """One line saying what the metric measures."""
    single_target_twin: str | None = None
    """The metric this one equals when every query has one target (Recall: HR), or None. The CLI leaves
    such a metric out of a leave-one-out table: it only says something with several targets."""


#: name -> Metric, in the order the CLI prints them. Keys of results are ``f"{name}@{k}"``.
METRICS: dict[str, Metric] = {
    "HR": Metric(lambda hits, n_targets, k: hit_rate(hits, k), "1 if any target is in the top k"),
    "Recall": Metric(recall, "share of the targets found in the top k", single_target_twin="HR"),
    "NDCG": Metric(ndcg, "DCG of the top k over the ideal DCG"),
    "MRR": Metric(lambda hits, n_targets, k: mrr(hits, k), "1 / rank of the first target in the top k"),
}

#: The metrics computed when a configuration names none: every metric of the table as imported.
DEFAULT_METRICS: tuple[str, ...] = tuple(METRICS)


def compute_metrics(hits: np.ndarray, n_targets: np.ndarray, ks: tuple[int, ...] | list[int],
                    names: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, np.ndarray]:
    """Per-query values of every metric in ``names`` (keys of :data:`METRICS`) at every cut-off in ``ks``:
    keys like ``"HR@10"``, metric-major in the order of ``names``."""
    if hits.shape[1] < max(ks):
        raise ValueError(f"hit matrix has {hits.shape[1]} columns, fewer than the largest cut-off {max(ks)}")
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return {f"{name}@{k}": METRICS[name].function(hits, n_targets, k) for name in names for k in ks}
