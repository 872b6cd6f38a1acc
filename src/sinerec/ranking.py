"""The evaluator's ranking, one function per concept: the offline evaluator, the item indexes, the server,
the export and the explanations all call these (the serving path is the evaluator's by construction).

- :func:`retrieval_query`: which vector(s) of a model's output are scored against the items.
- :func:`score_items`: an item's score, the inner product with the query (max over K interest vectors for
  multi-vector models, equivalent to per-interest top-k merged by score with items deduplicated).
- :func:`exclusion_pairs`: history exclusion as (query row, item id) pairs.
- :func:`topk_items`: exact top-k over items 1..M with exclusion, ties to the smaller id.
- :func:`interest_behind`: the interest (0..K-1) whose vector scores an item highest.

The window a model sees (a history's last T items, left-padded) is
:func:`sinerec.data.batching.gather_histories`.

Ranking is over all items 1..M; ties in score go to the smaller item id, so results are deterministic. Scores
are computed for chunks of items with a running top-k, so memory is O(B * (k + chunk)), never B x M.

Shapes: B queries, K interests, D dim, M items, C items of a chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from sinerec.models.base import ModelOutput, SequentialRecommender

__all__ = ["exclusion_pairs", "interest_behind", "retrieval_query", "score_items", "sequences_exclusion",
           "topk_items"]


def retrieval_query(model: SequentialRecommender, out: ModelOutput) -> torch.Tensor:
    """The query a model's output is ranked by: (B, K, D) interest vectors when the model declares
    ``multi_vector_retrieval`` (ComiRec, MIND), else the (B, D) user vector."""
    if model.multi_vector_retrieval:
        if out.interests is None:
            raise ValueError(f"{type(model).__name__} declares multi_vector_retrieval but returns no interests")
        return out.interests
    return out.user


def score_items(user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """user (B, D) or (B, K, D), items (C, D) -> scores (B, C); multi-vector: max over K, one interest at a
    time: no (B, K, C) array (K times the scores' memory: 410 MB for 512 queries x 4 interests x 50k items,
    in every process that evaluates)."""
    if user.dim() != 3:
        return user @ items.T
    scores = user[:, 0] @ items.T
    for k in range(1, user.shape[1]):
        if scores.requires_grad:
            scores = torch.maximum(scores, user[:, k] @ items.T)
        else:
            torch.maximum(scores, user[:, k] @ items.T, out=scores)
    return scores


def exclusion_pairs(items: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The items query b must not get, ``items[starts[b]:ends[b]]``, as :func:`topk_items`'s pairs.

    Args:
        items: (N,) item ids; starts, ends: (B,) bounds into it.
    Returns:
        rows (E,) and item ids (E,), long tensors on ``device``, E = sum of the lengths.
    """
    lengths = np.maximum(np.asarray(ends) - np.asarray(starts), 0)
    first = np.cumsum(lengths) - lengths  # (B,) where each query's pairs begin
    positions = np.arange(int(lengths.sum())) - np.repeat(first - np.asarray(starts), lengths)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    return (torch.from_numpy(rows.astype(np.int64)).to(device),
            torch.from_numpy(np.asarray(items, dtype=np.int64)[positions]).to(device))


def sequences_exclusion(sequences: Sequence[np.ndarray | Sequence[int]],
                        device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exclusion_pairs` for one sequence of item ids per query."""
    arrays = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    ends = np.cumsum(lengths)
    items = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return exclusion_pairs(items, ends - lengths, ends, device)


def topk_items(user: torch.Tensor, item_vectors: torch.Tensor, k: int,
               exclude_rows: torch.Tensor | None = None, exclude_items: torch.Tensor | None = None,
               chunk_size: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k items by score with ties to the smaller id, and item 0 (padding) never returned.

    Args:
        user: (B, D) or (B, K, D) query vectors.
        item_vectors: (M + 1, D); row 0 is padding.
        k: list length (at most M).
        exclude_rows, exclude_items: (E,) pairs (query row, item id) that must not be returned
            (:func:`exclusion_pairs`).
    Returns:
        ids (B, k) long and scores (B, k). Where fewer than k items are allowed, the tail has id -1 and
        score -inf.
    """
    num_rows = item_vectors.shape[0]
    B = user.shape[0]
    best_scores = user.new_full((B, 0), float("-inf"))
    best_ids = torch.zeros((B, 0), dtype=torch.long, device=user.device)
    for lo in range(0, num_rows, chunk_size):
        hi = min(lo + chunk_size, num_rows)
        scores = score_items(user, item_vectors[lo:hi]).float()  # (B, C)
        if lo == 0:
            scores[:, 0] = float("-inf")  # padding
        if exclude_rows is not None and exclude_items is not None and len(exclude_rows):
            sel = (exclude_items >= lo) & (exclude_items < hi)
            scores[exclude_rows[sel], exclude_items[sel] - lo] = float("-inf")
        cand_scores, cand_ids = _chunk_candidates(scores, k, lo)  # (B, c), c >= min(k, C), ids ascending
        # Earlier chunks hold smaller ids and come first: a stable sort keeps ties in id order.
        cat_scores = torch.cat([best_scores, cand_scores], dim=1)
        cat_ids = torch.cat([best_ids, cand_ids], dim=1)
        order = torch.sort(cat_scores, dim=1, descending=True, stable=True).indices[:, :k]
        best_scores = torch.gather(cat_scores, 1, order)
        best_ids = torch.gather(cat_ids, 1, order)
    if best_ids.shape[1] < k:  # fewer items than k: pad
        pad = k - best_ids.shape[1]
        best_ids = torch.cat([best_ids, best_ids.new_full((B, pad), -1)], dim=1)
        best_scores = torch.cat([best_scores, best_scores.new_full((B, pad), float("-inf"))], dim=1)
    best_ids = torch.where(torch.isinf(best_scores) & (best_scores < 0), -1, best_ids)
    return best_ids, best_scores


def _chunk_candidates(scores: torch.Tensor, k: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The entries of a score chunk that can enter a top-k, in ascending id order.

    Sorting a whole (B, C) chunk costs more than the scores themselves; ``torch.topk`` is fast but breaks
    ties arbitrarily. So topk only finds each row's k-th largest score, and every entry at or above it (all
    ties included) is kept, in id order: the stable sort that follows gives exactly the result of stable-
    sorting the whole chunk. Rows pad with -inf (removed by the caller's -inf -> -1 rule).

    Args:
        scores: (B, C) float scores of items ``offset .. offset + C - 1``.
    Returns:
        scores (B, c) and ids (B, c) long, c = the largest number of kept entries of a row (>= min(k, C)).
    """
    B, C = scores.shape
    kk = min(k, C)
    threshold = torch.topk(scores, kk, dim=1, sorted=False).values.amin(dim=1, keepdim=True)  # (B, 1)
    keep = scores >= threshold  # (B, C); NaN rows keep nothing
    rows, cols = keep.nonzero(as_tuple=True)  # row-major: ascending column within a row
    counts = torch.bincount(rows, minlength=B)  # (B,)
    width = int(counts.max()) if B else 0
    first = torch.cumsum(counts, 0) - counts  # (B,) index of each row's first kept entry in rows/cols
    slot = torch.arange(rows.numel(), device=scores.device) - first[rows]
    cand_scores = scores.new_full((B, width), float("-inf"))
    cand_ids = torch.full((B, width), -1, dtype=torch.long, device=scores.device)
    cand_scores[rows, slot] = scores[rows, cols]
    cand_ids[rows, slot] = cols + offset
    return cand_scores, cand_ids


def interest_behind(interests: torch.Tensor, item_vectors: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The interest whose vector scores each listed item highest, argmax_k phi_k . h_item (ties to the smaller k).

    Args:
        interests: (B, K, D); item_vectors: (M + 1, D); ids: (B, n) item ids, -1 for padding.
    Returns:
        (B, n) long in 0..K-1, -1 where the id is padding.
    """
    rows = ids.clamp(min=0)  # (B, n); padding is masked below
    affinity = torch.einsum("bkd,bnd->bnk", interests.float(), item_vectors.float()[rows])  # (B, n, K)
    return torch.where(ids >= 1, affinity.argmax(dim=-1), -1)
