"""NMI between a clustering of items and their categories: pure numpy.

NMI (normalised mutual information) here is ``I(A; B) / ((H(A) + H(B)) / 2)``: the arithmetic mean of the
two entropies, scikit-learn's default (``average_method="arithmetic"``). It is 1 for identical partitions
(up to renaming), 0 for independent ones, and 1 when both labelings are a single cluster.

Multi-label categories (a MovieLens movie has several genres, an Amazon Beauty item several attribute ids):
every (item, category) pair is one sample with weight ``1 / |categories(item)|``, so each item weighs 1 in
total whatever its number of labels, and a dataset with one label per item (Taobao's category id, the
paper's category tree) gives exactly the usual single-label NMI. Items without categories are left out.
Taking the first genre instead would be arbitrary (MovieLens lists genres alphabetically, so "Action" and
"Adventure" would win), and unweighted pairs would let an item with six genres count six times.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MULTILABEL_RULE", "NMI_NORMALISATION", "RandomNMI", "entropy", "expand_multilabel", "item_nmi", "nmi",
           "random_assignment_nmi"]

NMI_NORMALISATION = "arithmetic mean of the two entropies: NMI = I(A;B) / ((H(A) + H(B)) / 2)"
MULTILABEL_RULE = ("one sample per (item, category) pair, weighted 1/|categories of the item| so that every "
                   "item weighs 1; items without categories are left out")


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats of a probability vector (zeros allowed): ``-sum p log p``."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def nmi(labels_a: Sequence[Hashable] | np.ndarray, labels_b: Sequence[Hashable] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None) -> float:
    """Normalised mutual information of two labelings of the same samples.

    Args:
        labels_a, labels_b: (N,) labels of each sample under the two partitions (any hashable values).
        weights: (N,) non-negative sample weights (default 1 each): the joint distribution is
            ``p(a, b) = sum of the weights of the samples labelled (a, b) / total weight``.
    Returns:
        ``I(A; B) / ((H(A) + H(B)) / 2)`` in [0, 1] (natural logs; the base cancels). 1.0 when both
        entropies are 0 (both labelings are one cluster: identical partitions), as scikit-learn does.
    """
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"nmi: labels must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != a.shape or (w < 0).any():
        raise ValueError("nmi: weights must be one non-negative number per sample")
    total = w.sum()
    if total <= 0:
        raise ValueError("nmi: no samples (or all weights are zero)")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), w)
    joint /= total  # p(a, b)
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    h_a, h_b = entropy(pa), entropy(pb)
    if h_a + h_b <= 0:
        return 1.0
    nz = joint > 0
    mutual = float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())  # I(A; B)
    return float(np.clip(mutual / ((h_a + h_b) / 2), 0.0, 1.0))


def _as_label_sets(labels: Sequence[Any]) -> list[tuple[Hashable, ...]]:
    """Each entry as a tuple of labels: a tuple/list stays one (multi-label), a scalar becomes a 1-tuple."""
    return [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in labels]


def expand_multilabel(assignment: Sequence[Hashable] | np.ndarray,
                      categories: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples for the NMI of an item assignment against multi-label categories (see the module docstring).

    Args:
        assignment: (N,) each item's cluster (e.g. its nearest concept).
        categories: (N,) each item's labels: a tuple (several labels, possibly none) or a single label.
    Returns:
        (clusters, labels, weights), one entry per (item, label) pair, weight ``1 / |labels of the item|``.
    """
    sets = _as_label_sets(categories)
    if len(sets) != len(assignment):
        raise ValueError(f"expand_multilabel: {len(assignment)} assignments but {len(sets)} category entries")
    counts = np.array([len(s) for s in sets], dtype=np.int64)
    item_of_pair = np.repeat(np.arange(len(sets)), counts)
    labels = np.array([str(c) for s in sets for c in s], dtype=object)
    weights = 1.0 / counts[item_of_pair]
    return np.asarray(assignment)[item_of_pair], labels, weights


def item_nmi(assignment: Sequence[Hashable] | np.ndarray, categories: Sequence[Any]) -> float:
    """NMI between an item -> cluster assignment and the items' (multi-label) categories."""
    clusters, labels, weights = expand_multilabel(assignment, categories)
    return nmi(clusters, labels, weights)


@dataclass
class RandomNMI:
    """NMI of random assignments with fixed cluster sizes: the chance level a learned NMI must beat."""

    mean: float
    std: float
    values: list[float] = field(repr=False)


def random_assignment_nmi(cluster_sizes: Sequence[int] | np.ndarray, labels: Sequence[Any], seed: int = 0,
                          repeats: int = 20) -> RandomNMI:
    """NMI of ``repeats`` random item -> cluster assignments with exactly ``cluster_sizes`` items per cluster.

    Args:
        cluster_sizes: (C,) items per cluster; they must sum to ``len(labels)`` (zeros allowed).
        labels: (N,) each item's categories (a tuple for several, or one label), as for :func:`item_nmi`.
        seed: seed of the permutations (``numpy.random.default_rng(seed)``).
        repeats: number of random assignments.
    Returns:
        mean and (population) standard deviation of the NMIs, and the values.
    """
    sizes = np.asarray(cluster_sizes, dtype=np.int64)
    if (sizes < 0).any() or sizes.sum() != len(labels):
        raise ValueError(f"random_assignment_nmi: cluster sizes sum to {sizes.sum()}, expected {len(labels)}")
    if repeats < 1:
        raise ValueError("random_assignment_nmi: repeats must be >= 1")
    rng = np.random.default_rng(seed)
    base = np.repeat(np.arange(len(sizes)), sizes)  # (N,) cluster of each slot
    # The pairs do not depend on the assignment: expand once with the item index, then relabel.
    item_of_pair, pair_labels, weights = expand_multilabel(np.arange(len(labels)), labels)
    values = [nmi(rng.permutation(base)[item_of_pair], pair_labels, weights) for _ in range(repeats)]
    return RandomNMI(float(np.mean(values)), float(np.std(values)), values)
