"""Full-ranking evaluation shared by training, benchmarks and the server.

Any model plugs in through two calls: ``model.user_vectors(history)`` -> (B, D) or (B, K, D) and
``model.item_embeddings()`` -> (M + 1, D). An item's score is the inner product with the user vector, or the
max over the K interest vectors for multi-vector models (equivalent to per-interest top-k merged by score with
items deduplicated).

Ranking is over all items 1..M; ties in score go to the smaller item id, so results are deterministic. Scores
are computed for chunks of items with a running top-k, so memory is O(B * (k + chunk)), never B x M.
Evaluation can be sharded over processes by whole query batches (``rank``, ``world_size``, ``gather``) with
results identical to one process's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sinerec.data.batching import gather_histories
from sinerec.data.preprocess import SequenceData
from sinerec.data.splits import EvalSet, _ranges
from sinerec.errors import ConfigError
from sinerec.metrics import DEFAULT_METRICS, METRICS, compute_metrics
from sinerec.models.base import SequentialRecommender


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (10, 20, 50, 100)
    metrics: tuple[str, ...] = DEFAULT_METRICS  # names from the table sinerec.metrics.METRICS
    batch_size: int = 512  # queries per batch
    item_chunk: int = 1 << 16  # items scored at once

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ConfigError(f"eval.metrics: name at least one metric, got {self.metrics!r}")
        for name in self.metrics:
            if name not in METRICS:
                raise ConfigError(f"eval.metrics: unknown metric {name!r}; choose from {', '.join(METRICS)}")
        if not self.ks:
            raise ConfigError(f"eval.ks: give at least one cut-off, got {self.ks!r}")
        for k in self.ks:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigError(f"eval.ks: every cut-off must be an integer >= 1, got {k!r}")
        for key in ("batch_size", "item_chunk"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"eval.{key}: must be an integer >= 1, got {value!r}")


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


def shard_batches(n_queries: int, batch_size: int, rank: int = 0, world_size: int = 1) -> range:
    """The query batches (indices into ``range(0, n_queries, batch_size)``) that ``rank`` evaluates.

    Contiguous blocks of whole batches, the first ``n_batches % world_size`` ranks taking one more. Every
    batch keeps the boundaries (and so the shapes) of a single-process evaluation, which makes each query's
    scores, and so its metrics, bit-identical to the single process's; concatenating the ranks' results in
    rank order restores the original query order.
    """
    n_batches = -(-n_queries // batch_size)
    per, extra = divmod(n_batches, world_size)
    first = rank * per + min(rank, extra)
    return range(first, first + per + (rank < extra))


@torch.no_grad()
def evaluate(model: SequentialRecommender, data: SequenceData, queries: EvalSet, max_len: int,
             exclude_history: bool, config: EvalConfig | None = None, device: str | torch.device = "cpu",
             progress: bool = False, desc: str = "evaluate", rank: int = 0, world_size: int = 1,
             gather: Callable[[np.ndarray], list[np.ndarray]] | None = None) -> EvalResult:
    """Rank all items for every query of ``queries`` and compute the metrics.

    The model sees the last ``max_len`` items of each query's history; with ``exclude_history`` every item of
    the whole history (not only the last max_len) is removed from the ranking.

    Sharded evaluation (``world_size > 1``): this process ranks only the batches :func:`shard_batches` gives
    ``rank``, and ``gather`` (every rank's array in rank order, e.g. ``sinerec.distributed.all_gather_arrays``)
    collects the per-query hit lists, so every rank returns the whole, single-process result.
    """
    config = config or EvalConfig()
    if world_size > 1 and gather is None:
        raise ValueError("evaluate: world_size > 1 needs a gather function")
    kmax = max(config.ks)
    was_training = model.training
    model.eval()
    item_vectors = model.item_embeddings().detach()
    mine = shard_batches(len(queries), config.batch_size, rank, world_size)
    q_lo = min(mine.start * config.batch_size, len(queries))
    q_hi = min(mine.stop * config.batch_size, len(queries))
    hits_mine = np.zeros((q_hi - q_lo, kmax), dtype=bool)
    n_targets = np.diff(queries.target_offsets)
    bar = tqdm(total=q_hi - q_lo, desc=desc, unit="user", disable=not progress, leave=False)
    for lo in range(q_lo, q_hi, config.batch_size):
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
        hits_mine[lo - q_lo:hi - q_lo] = np.isin(list_keys, target_keys) & (ids_np >= 0)
        bar.update(hi - lo)
    bar.close()
    if was_training:
        model.train()
    if world_size == 1:
        hits_all = hits_mine
    else:
        assert gather is not None
        hits_all = np.concatenate(gather(hits_mine))
    if len(hits_all) != len(queries):
        raise RuntimeError(f"evaluate: gathered {len(hits_all)} queries, expected {len(queries)}")
    per_query = compute_metrics(hits_all, n_targets, config.ks, config.metrics)
    means = {k: float(v.mean()) if len(v) else 0.0 for k, v in per_query.items()}
    return EvalResult(means=means, per_query=per_query, users=queries.users, n_queries=len(queries))
