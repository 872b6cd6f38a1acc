"""Looking inside a trained SINE: concepts, interests and the paper's NMI analysis.

Pure functions first (NMI, random-assignment NMI, collapse checks), then functions of a loaded run
(``concept_table``, ``user_explanations``, ``explain_run``), then :func:`write_report`, which renders the
numbers with :mod:`sinerec.explain_report` (figures and HTML).

NMI (normalised mutual information) here is ``I(A; B) / ((H(A) + H(B)) / 2)``: the arithmetic mean of the
two entropies, scikit-learn's default (``average_method="arithmetic"``). It is 1 for identical partitions
(up to renaming), 0 for independent ones, and 1 when both labelings are a single cluster.

Multi-label categories (a MovieLens movie has several genres, an Amazon Beauty item several attribute ids):
every (item, category) pair is one sample with weight ``1 / |categories(item)|``, so each item weighs 1 in
total whatever its number of labels, and a dataset with one label per item (Taobao's category id, the
paper's category tree) gives exactly the usual single-label NMI. Items without categories are left out.
Taking the first genre instead would be arbitrary (MovieLens lists genres alphabetically, so "Action" and
"Adventure" would win), and unweighted pairs would let an item with six genres count six times.

Shapes: M items (ids 1..M, 0 is padding), L prototypes, K activated concepts, U users, T history length.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from sinerec.data.batching import user_windows
from sinerec.errors import SinerecError
from sinerec.ranking import exclusion_pairs, interest_behind, topk_items

if TYPE_CHECKING:
    from sinerec.models.sine import SINE
    from sinerec.runs import LoadedRun

__all__ = [
    "NMI_NORMALISATION", "MULTILABEL_RULE", "RandomNMI", "Activations", "nmi", "entropy", "expand_multilabel",
    "item_nmi", "random_assignment_nmi", "concept_nmi", "duplicate_prototypes", "collapse_warnings", "nearest_concepts",
    "user_activations", "concept_table", "user_explanations", "explain_run", "write_report", "require_sine",
]

NMI_NORMALISATION = "arithmetic mean of the two entropies: NMI = I(A;B) / ((H(A) + H(B)) / 2)"
MULTILABEL_RULE = ("one sample per (item, category) pair, weighted 1/|categories of the item| so that every "
                   "item weighs 1; items without categories are left out")


# ---------------------------------------------------------------------------------------------------------
# NMI: pure numpy
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Collapse checks: pure numpy
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Functions of a trained model
# ---------------------------------------------------------------------------------------------------------


def require_sine(run: LoadedRun) -> SINE:
    """``run``'s model if it has a concept pool (SINE); else SinerecError."""
    from sinerec.models.sine import SINE

    if not isinstance(run.model, SINE):
        raise SinerecError(f"{run.run_dir}: model {run.config.model!r} has no concept prototypes; concepts, "
                           "interests and NMI exist for SINE runs only")
    return run.model


def _has_concepts(run: LoadedRun) -> bool:
    from sinerec.models.sine import SINE

    return isinstance(run.model, SINE)


@torch.no_grad()
def nearest_concepts(item_vectors: torch.Tensor, prototypes: torch.Tensor,
                     chunk: int = 1 << 14) -> tuple[np.ndarray, np.ndarray]:
    """Each item's nearest prototype by cosine.

    Args:
        item_vectors: (M + 1, D) the item table (row 0 padding, ignored).
        prototypes: (L, D).
    Returns:
        concept (M,) and cosine (M,) of items 1..M.
    """
    protos = F.normalize(prototypes.float(), dim=-1)
    best, best_cos = [], []
    for lo in range(1, item_vectors.shape[0], chunk):
        cos = F.normalize(item_vectors[lo:lo + chunk].float(), dim=-1) @ protos.T  # (C, L)
        value, idx = cos.max(dim=1)
        best.append(idx)
        best_cos.append(value)
    return torch.cat(best).numpy(), torch.cat(best_cos).numpy()


@dataclass
class Activations:
    """What the concept-activation step chose for each user (last T items of the whole sequence)."""

    users: np.ndarray  # (U,) user indices
    concept_ids: np.ndarray  # (U, K) activated prototypes, best first
    gates: np.ndarray  # (U, K) sigmoid gates
    aggregation: np.ndarray  # (U, K) aggregation weights e
    intention_peak: np.ndarray  # (U,) mean over the history's items of max_k P(k|t) (1: one-hot assignments)

    def counts(self, num_concepts: int) -> np.ndarray:
        """(L,) number of users activating each concept."""
        return np.bincount(self.concept_ids.reshape(-1), minlength=num_concepts)

    def mean_gates(self, num_concepts: int) -> np.ndarray:
        """(L,) mean gate of each concept over the users activating it (NaN when never activated)."""
        sums = np.bincount(self.concept_ids.reshape(-1), weights=self.gates.reshape(-1), minlength=num_concepts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / self.counts(num_concepts)

    def mean_aggregation(self, num_concepts: int) -> np.ndarray:
        """(L,) mean aggregation weight e of each concept when activated (NaN when never activated)."""
        sums = np.bincount(self.concept_ids.reshape(-1), weights=self.aggregation.reshape(-1),
                           minlength=num_concepts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / self.counts(num_concepts)


def _histories(run: LoadedRun, users: np.ndarray) -> torch.Tensor:
    """(U, T) the last T = max_len items of each user's whole sequence, left-padded."""
    return torch.from_numpy(user_windows(run.data, users, run.config.data.max_len))


@torch.no_grad()
def user_activations(run: LoadedRun, users: np.ndarray | None = None, batch_size: int = 512) -> Activations:
    """Run SINE over users (default: all) and keep the activated concepts, their gates and weights e."""
    model = require_sine(run)
    users = np.arange(run.data.num_users) if users is None else np.asarray(users, dtype=np.int64)
    ids, gates, agg, peak = [], [], [], []
    for lo in range(0, len(users), batch_size):
        history = _histories(run, users[lo:lo + batch_size])  # (B, T)
        extras = model(history).extras
        ids.append(extras["concept_ids"].numpy())
        gates.append(extras["gates"].float().numpy())
        agg.append(extras["aggregation"].float().numpy())
        real = (history > 0).sum(dim=1).clamp(min=1)  # (B,)
        peak.append((extras["intention"].float().amax(dim=-1).sum(dim=1) / real).numpy())  # zero at padding
    k = model.config.num_interests
    cat = (lambda xs, dt, *shape: np.concatenate(xs) if xs else np.zeros((0, *shape), dtype=dt))  # noqa: E731
    return Activations(users, cat(ids, np.int64, k), cat(gates, np.float64, k), cat(agg, np.float64, k),
                       cat(peak, np.float64))


def _item_info(run: LoadedRun, item: int) -> dict[str, Any]:
    """JSON-ready description of item index ``item``: original id, title, categories."""
    data = run.data
    return {"item_id": _plain(data.item_ids[item]),
            "title": data.item_titles[item] if data.item_titles else "",
            "categories": list(data.item_categories[item]) if data.item_categories else []}


def _plain(x: Any) -> Any:
    """numpy scalars -> Python scalars (for JSON)."""
    return x.item() if isinstance(x, np.generic) else x


@torch.no_grad()
def concept_table(run: LoadedRun, n_top: int = 10, activations: Activations | None = None) -> list[dict[str, Any]]:
    """One record per concept (prototype row): what it means and how much it is used.

    Keys: ``concept``; ``top_items`` (the ``n_top`` items with the largest cosine to the prototype: item_id,
    title, categories, cosine); ``n_items`` (items whose nearest prototype it is); ``top_categories``
    ([label, share] of those items' categories, fractional as in the NMI, at most 5); ``users`` (users
    activating it), ``user_share``; ``mean_gate`` and ``mean_aggregation`` (over those users; None if never
    activated).
    """
    model = require_sine(run)
    activations = activations if activations is not None else user_activations(run)
    protos = model.prototypes.detach().float()
    items = model.item_embeddings().detach().float()
    num_concepts = protos.shape[0]
    ids, cos = topk_items(F.normalize(protos, dim=-1), F.normalize(items, dim=-1), min(n_top, items.shape[0] - 1))
    nearest, _ = nearest_concepts(items, protos)
    counts = activations.counts(num_concepts)
    gates, agg = activations.mean_gates(num_concepts), activations.mean_aggregation(num_concepts)
    cats = run.data.item_categories
    table = []
    for c in range(num_concepts):
        members = np.flatnonzero(nearest == c) + 1
        top_cats: list[list[Any]] = []
        if cats is not None and len(members):
            share: dict[str, float] = defaultdict(float)
            for i in members:
                for label in cats[i]:
                    share[label] += 1.0 / len(cats[i])
            top = sorted(share.items(), key=lambda x: -x[1])[:5]
            top_cats = [[label, round(v / len(members), 4)] for label, v in top]
        table.append({
            "concept": c,
            "top_items": [{**_item_info(run, int(i)), "cosine": round(float(s), 4)}
                          for i, s in zip(ids[c].tolist(), cos[c].tolist(), strict=True) if i > 0],
            "n_items": int(len(members)),
            "top_categories": top_cats,
            "users": int(counts[c]),
            "user_share": float(counts[c] / max(len(activations.users), 1)),
            "mean_gate": None if counts[c] == 0 else round(float(gates[c]), 4),
            "mean_aggregation": None if counts[c] == 0 else round(float(agg[c]), 4),
        })
    return table


@torch.no_grad()
def user_explanations(run: LoadedRun, users: Sequence[int] | np.ndarray, k: int = 10) -> list[dict[str, Any]]:
    """Why SINE recommends what it does, for each user index in ``users``.

    The input is the last T items of the user's whole sequence. Recommendations are the top ``k`` items by
    v . h_j (history excluded when the run's protocol excludes it). The interest behind an item is the one
    whose vector scores it highest, argmax_k phi_k . h_j, the rule of :mod:`sinerec.recommend` (so the report
    and the explorer group alike). Since v = sum_k e_k phi_k, ``contributions`` lists e_k (phi_k . h_j),
    which sum to the score: with tau = 0.1 the weights e are often nearly one-hot, and the contributions show
    which interest actually carried the score.

    Returns, per user: ``user``, ``user_id``, ``length`` (whole sequence); ``history``: the T items (oldest
    first) with ``intention`` (P(k|t) over the K slots) and ``interest`` (argmax slot); ``interests``: per
    slot k, ``concept``, ``gate``, ``aggregation`` (e_k) and ``recommendations`` (items whose interest is k,
    best first); ``recommendations``: the whole list with ``score``, ``interest`` and ``contributions``.
    """
    require_sine(run)
    users = np.asarray(users, dtype=np.int64)
    if len(users) == 0:
        return []
    history = _histories(run, users)  # (U, T)
    out = run.model(history)
    ex = out.extras
    item_vectors = run.model.item_embeddings().detach()
    rows = ex_items = None
    if run.config.protocol.excludes_history:
        rows, ex_items = exclusion_pairs(run.data.items, run.data.offsets[users], run.data.offsets[users + 1])
    rec_ids, rec_scores = topk_items(out.user, item_vectors, k, rows, ex_items)
    behind_all = interest_behind(out.interests, item_vectors, rec_ids)  # (U, k)
    result = []
    for r, u in enumerate(users.tolist()):
        valid = rec_ids[r] > 0
        ids = rec_ids[r][valid]
        # contributions e_k (phi_k . h_j): (K, k), summing over K to the score v . h_j
        affinity = out.interests[r] @ item_vectors[ids].T  # (K, k)  phi_k . h_j
        contrib = ex["aggregation"][r].unsqueeze(1) * affinity
        behind = behind_all[r][valid]
        recs = [{**_item_info(run, int(i)), "item": int(i), "score": round(float(s), 4), "interest": int(b),
                 "contributions": [round(float(x), 4) for x in contrib[:, n]]}
                for n, (i, s, b) in enumerate(zip(ids.tolist(), rec_scores[r][valid].tolist(), behind.tolist(),
                                                  strict=True))]
        mask = history[r] > 0
        intention = ex["intention"][r][mask]  # (t, K)
        hist = [{**_item_info(run, int(i)), "item": int(i), "intention": [round(float(p), 4) for p in probs],
                 "interest": int(probs.argmax())}
                for i, probs in zip(history[r][mask].tolist(), intention, strict=True)]
        slots = [{"slot": s, "concept": int(ex["concept_ids"][r, s]), "gate": round(float(ex["gates"][r, s]), 4),
                  "aggregation": round(float(ex["aggregation"][r, s]), 4),
                  "recommendations": [x for x in recs if x["interest"] == s]}
                 for s in range(ex["concept_ids"].shape[1])]
        result.append({"user": u, "user_id": _plain(run.data.user_ids[u]), "length": int(len(run.data.sequence(u))),
                       "history": hist, "interests": slots, "recommendations": recs})
    return result



# ---------------------------------------------------------------------------------------------------------
# The whole analysis of a run, and the report
# ---------------------------------------------------------------------------------------------------------


def _concept_category_shares(nearest: np.ndarray, categories: Sequence[tuple[str, ...]], num_concepts: int,
                             n_categories: int = 25) -> dict[str, Any]:
    """Share of each concept's items (nearest prototype) in each of the ``n_categories`` most frequent
    categories, fractional as in the NMI: {"categories": [C labels], "shares": (L, C) nested lists}."""
    total: dict[str, float] = defaultdict(float)
    for cats in categories:
        for label in cats:
            total[label] += 1.0 / len(cats)
    labels = [label for label, _ in sorted(total.items(), key=lambda x: -x[1])[:n_categories]]
    column = {label: j for j, label in enumerate(labels)}
    shares = np.zeros((num_concepts, len(labels)))
    sizes = np.bincount(nearest, minlength=num_concepts).astype(np.float64)
    for concept, cats in zip(nearest.tolist(), categories, strict=True):
        for label in cats:
            if label in column:
                shares[concept, column[label]] += 1.0 / len(cats)
    shares /= np.maximum(sizes, 1.0)[:, None]
    return {"categories": labels, "shares": np.round(shares, 4).tolist()}


def concept_nmi(run: LoadedRun, seed: int = 0, repeats: int = 20,
                nearest: np.ndarray | None = None) -> dict[str, Any] | None:
    """The paper's NMI analysis: each item's nearest concept against the dataset's categories.

    Args:
        run: a LoadedRun of a SINE model.
        seed, repeats: of the random assignments with the same cluster sizes (:func:`random_assignment_nmi`).
        nearest: (M,) each item's nearest prototype, if already computed (:func:`nearest_concepts`).
    Returns:
        None when the dataset has no item categories; else ``value`` (the learned concepts' NMI),
        ``random_mean`` / ``random_std`` / ``random_values`` (chance level), ``z`` = (value - mean) / std,
        ``n_items`` (items with categories), ``n_categories``, ``clusters_used`` and how it was computed.
    """
    model = require_sine(run)
    data = run.data
    if data.item_categories is None:
        return None
    if nearest is None:
        nearest, _ = nearest_concepts(model.item_embeddings().detach(), model.prototypes.detach())
    cats = data.item_categories[1:]  # items 1..M
    has = np.array([len(c) > 0 for c in cats])
    labelled = [c for c, h in zip(cats, has, strict=True) if h]
    assignment = nearest[has]
    value = item_nmi(assignment, labelled)
    chance = random_assignment_nmi(np.bincount(assignment, minlength=model.prototypes.shape[0]), labelled,
                                   seed, repeats)
    return {
        "value": round(value, 4), "random_mean": round(chance.mean, 4), "random_std": round(chance.std, 4),
        "random_values": [round(v, 4) for v in chance.values], "repeats": repeats, "seed": seed,
        "z": round((value - chance.mean) / chance.std, 1) if chance.std > 0 else None,
        "n_items": int(has.sum()), "n_categories": len({x for c in labelled for x in c}),
        "clusters_used": int(len(np.unique(assignment))),
        "assignment": "each item's nearest prototype by cosine (item embedding vs prototype row)",
        "normalisation": NMI_NORMALISATION, "multilabel": MULTILABEL_RULE,
    }


def explain_run(run: LoadedRun, n_users: int = 6, n_top: int = 10, k: int = 10, seed: int = 0, repeats: int = 20,
                max_activation_users: int = 50_000) -> dict[str, Any]:
    """Every number of the report, as one JSON-ready dict (the content of ``explain.json``).

    Args:
        run: a LoadedRun (``sinerec.runs.load_run``).
        n_users: size of the random sample of explained users.
        n_top: items listed per concept; k: recommendations per explained user.
        seed: seeds the user samples and the random-assignment NMI.
        repeats: random assignments averaged for the chance-level NMI.
        max_activation_users: activation statistics use all users, or a random sample of this many.
    Returns:
        ``run``, ``model``, ``dataset``, ``curves`` (per-epoch loss and validation metrics) always; for SINE
        also ``nmi`` (None when the dataset has no categories), ``activation``, ``duplicates``, ``warnings``,
        ``concepts`` (:func:`concept_table`), ``concept_categories``, ``users`` (:func:`user_explanations`).
    """
    data = run.data
    rng = np.random.default_rng(seed)
    doc: dict[str, Any] = {
        "run": str(run.run_dir), "model": run.config.model,
        "dataset": {"name": data.name, "n_users": data.num_users, "n_items": data.num_items,
                    "n_interactions": data.num_interactions, "fingerprint": data.fingerprint()},
        "curves": [{"epoch": r.get("epoch"), "loss": r.get("loss"), "valid": r.get("valid", {})}
                   for r in run.history],
        "test": (run.metrics or {}).get("test"),
    }
    if not _has_concepts(run):
        doc["note"] = (f"model {run.config.model!r} has no concept pool: concepts, interests and NMI exist for "
                       "SINE runs only; this report shows the training curves")
        return doc
    model = require_sine(run)
    num_concepts, num_interests = model.config.num_concepts, model.config.num_interests
    users = np.arange(data.num_users)
    if len(users) > max_activation_users:
        users = np.sort(rng.choice(users, max_activation_users, replace=False))
    acts = user_activations(run, users)
    counts = acts.counts(num_concepts)
    prototypes = model.prototypes.detach().float().numpy()
    nearest, _ = nearest_concepts(model.item_embeddings().detach(), model.prototypes.detach())
    share = counts / max(counts.sum(), 1)
    doc["activation"] = {
        "n_users": int(len(users)), "num_concepts": num_concepts, "num_interests": num_interests,
        "ever_activated": int((counts > 0).sum()),
        "effective_concepts": round(float(np.exp(entropy(share))), 2),  # exp(entropy) of activation shares
        "counts": counts.tolist(),
        "mean_gates": [None if np.isnan(g) else round(float(g), 4) for g in acts.mean_gates(num_concepts)],
        "mean_aggregation": [None if np.isnan(g) else round(float(g), 4)
                             for g in acts.mean_aggregation(num_concepts)],
        "items_per_concept": np.bincount(nearest, minlength=num_concepts).tolist(),
        # 1.0: one-hot (saturated); 1/K: uniform
        "mean_aggregation_peak": round(float(acts.aggregation.max(axis=1).mean()), 4) if len(users) else None,
        "mean_intention_peak": round(float(acts.intention_peak.mean()), 4) if len(users) else None,
    }
    doc["duplicates"] = [list(p) for p in duplicate_prototypes(prototypes)]
    doc["warnings"] = collapse_warnings(counts, prototypes, num_interests,
                                        aggregation_peak=doc["activation"]["mean_aggregation_peak"])
    doc["nmi"] = concept_nmi(run, seed, repeats, nearest)
    if data.item_categories is not None:
        doc["concept_categories"] = _concept_category_shares(nearest, data.item_categories[1:], num_concepts)
    doc["concepts"] = concept_table(run, n_top, acts)
    sample = np.sort(rng.choice(data.num_users, min(n_users, data.num_users), replace=False))
    doc["users"] = user_explanations(run, sample, k)
    return doc


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, n_users: int = 6, n_top: int = 10,
                 k: int = 10, seed: int = 0, repeats: int = 20) -> Path:
    """Explain the run in ``run_dir``: write ``report.html``, ``explain.json`` and ``figures/*.png``.

    ``out_dir`` defaults to ``RUN/explain``. The PNGs are written next to the report under ``figures/`` and
    also embedded in ``report.html`` as base64 data URIs, so the HTML file alone is self-contained. Every
    file is written atomically (temporary file, then rename). Non-SINE runs get a report with the training
    curves only. Needs matplotlib (``pip install 'sinerec[explain]'``).

    Returns:
        the path of ``report.html``.
    """
    from sinerec.explain_report import render_figures, render_html
    from sinerec.runs import load_run
    from sinerec.storage import atomic_write_bytes, atomic_write_text, write_json

    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "explain"
    with torch.inference_mode():
        doc = explain_run(run, n_users=n_users, n_top=n_top, k=k, seed=seed, repeats=repeats)
    figures = render_figures(run, doc)
    for name, png in figures.items():
        atomic_write_bytes(out / "figures" / f"{name}.png", png)
    doc["figures"] = [f"figures/{name}.png" for name in figures]
    write_json(out / "explain.json", doc)
    report = out / "report.html"
    atomic_write_text(report, render_html(doc, figures))
    return report
