"""Signs that SINE's concept pool collapsed (few concepts used, duplicate prototypes, one-hot aggregation):
pure numpy.

Shapes: L prototypes, D dim, K activated concepts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["collapse_warnings", "duplicate_prototypes"]


def duplicate_prototypes(prototypes: np.ndarray, threshold: float = 0.95) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine), i < j, of prototype rows (L, D) whose cosine exceeds ``threshold``, most similar
    first."""
    c = np.asarray(prototypes, dtype=np.float64)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    sim = c @ c.T  # (L, L)
    i, j = np.triu_indices(len(c), k=1)
    hit = sim[i, j] > threshold
    pairs = sorted(zip(i[hit].tolist(), j[hit].tolist(), sim[i, j][hit].tolist(), strict=True),
                   key=lambda x: -x[2])
    return [(a, b, float(s)) for a, b, s in pairs]


def collapse_warnings(activation_counts: np.ndarray, prototypes: np.ndarray, num_interests: int,
                      min_active_fraction: float = 0.5, duplicate_cosine: float = 0.95,
                      aggregation_peak: float | None = None, peak_threshold: float = 0.95) -> list[str]:
    """Human-readable warnings when the concept pool (or the use of the K interests) collapsed.

    Args:
        activation_counts: (L,) number of users whose top-K activated each concept.
        prototypes: (L, D) the prototype matrix C.
        num_interests: K.
        min_active_fraction: warn when fewer than this share of the L concepts is ever activated.
        duplicate_cosine: warn for prototype pairs with a cosine above this.
        aggregation_peak: the users' mean of max_k e_k, if known; above ``peak_threshold`` the user vector
            is nearly always a single interest (the other K - 1 are computed but unused).
    Returns:
        Zero or more sentences (empty: no sign of collapse).
    """
    counts = np.asarray(activation_counts)
    num_concepts = len(counts)
    out = []
    active = int((counts > 0).sum())
    if active < max(num_interests, min_active_fraction * num_concepts):
        out.append(f"only {active} of {num_concepts} concepts are ever activated (K = {num_interests}): the "
                   "concept pool has partly collapsed; the others are never selected by any user")
    total = counts.sum()
    if total > 0:
        top = np.sort(counts)[::-1][:num_interests].sum() / total
        if num_concepts > num_interests and top > 0.9:
            out.append(f"{100 * top:.0f} % of all activations go to the {num_interests} most used concepts: "
                       "nearly every user activates the same ones")
    dups = duplicate_prototypes(prototypes, duplicate_cosine)
    if dups:
        shown = ", ".join(f"{a}~{b} ({s:.3f})" for a, b, s in dups[:10])
        out.append(f"{len(dups)} near-duplicate prototype pairs (cosine > {duplicate_cosine}): {shown}"
                   + (" ..." if len(dups) > 10 else ""))
    if aggregation_peak is not None and num_interests > 1 and aggregation_peak > peak_threshold:
        out.append(f"the aggregation weights e are nearly one-hot (mean max_k e_k = {aggregation_peak:.3f}): each "
                   "user vector is in effect a single interest; the other interests do not reach the score")
    return out
