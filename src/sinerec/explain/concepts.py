"""Inside a trained SINE: which concepts users activate, what each concept means, why a user gets a list.

Functions of a loaded run (``sinerec.runs.load_run``); the numbers of ``sinerec explain`` and the explorer.

Shapes: M items (ids 1..M, 0 is padding), L prototypes, K activated concepts, U users, T history length.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from sinerec.data.batching import user_windows
from sinerec.errors import SinerecError
from sinerec.explain.nmi import MULTILABEL_RULE, NMI_NORMALISATION, item_nmi, random_assignment_nmi
from sinerec.ids import plain_id
from sinerec.ranking import exclusion_pairs, interest_behind, topk_items

if TYPE_CHECKING:
    from sinerec.models.sine import SINE
    from sinerec.runs import LoadedRun

__all__ = ["Activations", "concept_nmi", "concept_table", "has_concepts", "nearest_concepts", "require_sine",
           "interests_expressed", "usage_histogram", "user_activations", "user_explanations"]


def require_sine(run: LoadedRun) -> SINE:
    """``run``'s model if it has a concept pool (SINE); else SinerecError."""
    from sinerec.models.sine import SINE

    if not isinstance(run.model, SINE):
        raise SinerecError(f"{run.run_dir}: model {run.config.model!r} has no concept prototypes; concepts, "
                           "interests and NMI exist for SINE runs only")
    return run.model


def has_concepts(run: LoadedRun) -> bool:
    """Whether ``run``'s model has a concept pool (is a SINE)."""
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
    expressed: np.ndarray  # (U,) how many of the K interests are the most likely intention of some history item

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


def interests_expressed(intention: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """How many distinct interests a history expresses: intention P(k|t) (B, T, K), real (B, T) bool ->
    (B,) the number of k that are argmax_k P(k|t) of at least one real item (0 for an empty history).
    An interest that no item expresses is built from attention alone: a sign of a saturated Eq. 3."""
    num_interests = intention.shape[-1]
    winners = intention.argmax(dim=-1)  # (B, T)
    hits = F.one_hot(winners, num_interests) * real.unsqueeze(-1)  # (B, T, K)
    return (hits.sum(dim=1) > 0).sum(dim=1)


def usage_histogram(values: np.ndarray, num_interests: int, bins: int = 10) -> dict[str, list[float]]:
    """Counts of a per-user peak (max_k e_k or max_k P(k|t)) in ``bins`` equal bins over [1/K, 1]."""
    edges = np.linspace(1.0 / num_interests, 1.0, bins + 1)
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


@torch.no_grad()
def user_activations(run: LoadedRun, users: np.ndarray | None = None, batch_size: int = 512) -> Activations:
    """Run SINE over users (default: all) and keep the activated concepts, their gates and weights e."""
    model = require_sine(run)
    users = np.arange(run.data.num_users) if users is None else np.asarray(users, dtype=np.int64)
    ids, gates, agg, peak, expressed = [], [], [], [], []
    for lo in range(0, len(users), batch_size):
        history = _histories(run, users[lo:lo + batch_size])  # (B, T)
        extras = model(history).extras
        ids.append(extras["concept_ids"].numpy())
        gates.append(extras["gates"].float().numpy())
        agg.append(extras["aggregation"].float().numpy())
        real = (history > 0).sum(dim=1).clamp(min=1)  # (B,)
        peak.append((extras["intention"].float().amax(dim=-1).sum(dim=1) / real).numpy())  # zero at padding
        expressed.append(interests_expressed(extras["intention"], history > 0).numpy())
    k = model.config.num_interests
    cat = (lambda xs, dt, *shape: np.concatenate(xs) if xs else np.zeros((0, *shape), dtype=dt))  # noqa: E731
    return Activations(users, cat(ids, np.int64, k), cat(gates, np.float64, k), cat(agg, np.float64, k),
                       cat(peak, np.float64), cat(expressed, np.int64))


def _item_info(run: LoadedRun, item: int) -> dict[str, Any]:
    """JSON-ready description of item index ``item``: original id, title, categories."""
    data = run.data
    return {"item_id": plain_id(data.item_ids[item]),
            "title": data.item_titles[item] if data.item_titles else "",
            "categories": list(data.item_categories[item]) if data.item_categories else []}


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
        result.append({"user": u, "user_id": plain_id(run.data.user_ids[u]), "length": int(len(run.data.sequence(u))),
                       "history": hist, "interests": slots, "recommendations": recs})
    return result


def concept_nmi(run: LoadedRun, seed: int = 0, repeats: int = 20,
                nearest: np.ndarray | None = None, min_count: int = 1) -> dict[str, Any] | None:
    """The paper's NMI analysis: each item's nearest concept against the dataset's categories.

    Args:
        run: a LoadedRun of a SINE model.
        seed, repeats: of the random assignments with the same cluster sizes (:func:`random_assignment_nmi`).
        nearest: (M,) each item's nearest prototype, if already computed (:func:`nearest_concepts`).
        min_count: only items with at least this many interactions in the data (an item seen once or twice
            keeps an embedding near its random initialisation, and so does its nearest concept).
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
    if min_count > 1:
        has &= np.bincount(np.asarray(data.items), minlength=data.num_items + 1)[1:] >= min_count
    if not has.any():
        return None
    labelled = [c for c, h in zip(cats, has, strict=True) if h]
    assignment = nearest[has]
    value = item_nmi(assignment, labelled)
    chance = random_assignment_nmi(np.bincount(assignment, minlength=model.prototypes.shape[0]), labelled,
                                   seed, repeats)
    return {
        "value": round(value, 4), "random_mean": round(chance.mean, 4), "random_std": round(chance.std, 4),
        "random_values": [round(v, 4) for v in chance.values], "repeats": repeats, "seed": seed,
        "z": round((value - chance.mean) / chance.std, 1) if chance.std > 0 else None,
        "n_items": int(has.sum()), "min_count": min_count, "n_categories": len({x for c in labelled for x in c}),
        "clusters_used": int(len(np.unique(assignment))),
        "assignment": "each item's nearest prototype by cosine (item embedding vs prototype row)",
        "normalisation": NMI_NORMALISATION, "multilabel": MULTILABEL_RULE,
    }
