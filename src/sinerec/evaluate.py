"""Full-ranking evaluation shared by training, benchmarks and the server.

Any model plugs in through two calls: ``model.user_vectors(history)`` -> (B, D) or (B, K, D) and
``model.item_embeddings()`` -> (M + 1, D). An item's score is the inner product with the user vector, or the
max over the K interest vectors for multi-vector models (equivalent to per-interest top-k merged by score with
items deduplicated).

Ranking is over all items 1..M; ties in score go to the smaller item id, so results are deterministic. Scores
are computed for chunks of items with a running top-k, so memory is O(B * (k + chunk)), never B x M.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sinerec.data.batching import gather_histories
from sinerec.data.preprocess import SequenceData
from sinerec.data.splits import EvalSet, _ranges
from sinerec.metrics import METRICS, compute_metrics
from sinerec.models.base import SequentialRecommender


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (10, 20, 50, 100)
    metrics: tuple[str, ...] = METRICS
    batch_size: int = 512  # queries per batch
    item_chunk: int = 1 << 16  # items scored at once


@dataclass
class EvalResult:
    means: dict[str, float]  # metric -> mean over queries (a fraction)
    per_query: dict[str, np.ndarray] = field(repr=False)  # metric -> (Q,)
    users: np.ndarray = field(repr=False)  # (Q,) user index of each query
    n_queries: int = 0


def score_items(user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """user (B, D) or (B, K, D), items (C, D) -> scores (B, C); multi-vector: max over K."""
    if user.dim() == 3:
        return torch.einsum("bkd,cd->bkc", user, items).amax(dim=1)
    return user @ items.T


def topk_items(user: torch.Tensor, item_vectors: torch.Tensor, k: int,
               exclude_rows: torch.Tensor | None = None, exclude_items: torch.Tensor | None = None,
               chunk_size: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k items by score with ties to the smaller id, and item 0 (padding) never returned.

    Args:
        user: (B, D) or (B, K, D) query vectors.
        item_vectors: (M + 1, D); row 0 is padding.
        k: list length (at most M).
        exclude_rows, exclude_items: (E,) pairs (query row, item id) that must not be returned.
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
        ids = torch.arange(lo, hi, device=user.device).expand(B, -1)
        # Earlier chunks hold smaller ids and come first: a stable sort keeps ties in id order.
        cat_scores = torch.cat([best_scores, scores], dim=1)
        cat_ids = torch.cat([best_ids, ids], dim=1)
        order = torch.sort(cat_scores, dim=1, descending=True, stable=True).indices[:, :k]
        best_scores = torch.gather(cat_scores, 1, order)
        best_ids = torch.gather(cat_ids, 1, order)
    if best_ids.shape[1] < k:  # fewer items than k: pad
        pad = k - best_ids.shape[1]
        best_ids = torch.cat([best_ids, best_ids.new_full((B, pad), -1)], dim=1)
        best_scores = torch.cat([best_scores, best_scores.new_full((B, pad), float("-inf"))], dim=1)
    best_ids = torch.where(torch.isinf(best_scores) & (best_scores < 0), -1, best_ids)
    return best_ids, best_scores


@torch.no_grad()
def evaluate(model: SequentialRecommender, data: SequenceData, queries: EvalSet, max_len: int,
             exclude_history: bool, config: EvalConfig | None = None, device: str | torch.device = "cpu",
             progress: bool = False, desc: str = "evaluate") -> EvalResult:
    """Rank all items for every query of ``queries`` and compute the metrics.

    The model sees the last ``max_len`` items of each query's history; with ``exclude_history`` every item of
    the whole history (not only the last max_len) is removed from the ranking.
    """
    config = config or EvalConfig()
    kmax = max(config.ks)
    was_training = model.training
    model.eval()
    item_vectors = model.item_embeddings().detach()
    hits_all = np.zeros((len(queries), kmax), dtype=bool)
    n_targets = np.diff(queries.target_offsets)
    bar = tqdm(total=len(queries), desc=desc, unit="user", disable=not progress, leave=False)
    for lo in range(0, len(queries), config.batch_size):
        hi = min(lo + config.batch_size, len(queries))
        hs, he = queries.hist_start[lo:hi], queries.hist_end[lo:hi]
        history = torch.from_numpy(gather_histories(data.items, hs, he, max_len)).to(device)
        user = model.user_vectors(history)
        ex_rows = ex_items = None
        if exclude_history:
            lengths = he - hs
            ex_rows = torch.from_numpy(np.repeat(np.arange(hi - lo), lengths)).to(device)
            ex_items = torch.from_numpy(data.items[_ranges(hs, he)]).to(device)
        ids, _ = topk_items(user, item_vectors, kmax, ex_rows, ex_items, config.item_chunk)
        ids_np = ids.cpu().numpy()
        # membership of each listed item in the query's targets, via (row, item) keys: no B x M mask
        width = item_vectors.shape[0]
        owner = np.repeat(np.arange(hi - lo), n_targets[lo:hi])
        target_keys = owner * width + queries.targets[queries.target_offsets[lo]:queries.target_offsets[hi]]
        list_keys = np.arange(hi - lo)[:, None] * width + ids_np
        hits_all[lo:hi] = np.isin(list_keys, target_keys) & (ids_np >= 0)
        bar.update(hi - lo)
    bar.close()
    if was_training:
        model.train()
    per_query = compute_metrics(hits_all, n_targets, config.ks, config.metrics)
    means = {k: float(v.mean()) if len(v) else 0.0 for k, v in per_query.items()}
    return EvalResult(means=means, per_query=per_query, users=queries.users, n_queries=len(queries))
