"""Full-ranking evaluation shared by training, benchmarks and the server.

Any model plugs in through its forward output and ``model.item_embeddings()`` -> (M + 1, D). The ranking is
:mod:`sinerec.ranking`'s, called through the module so that the server's exact index and this evaluator run
the very same functions: the window (``gather_histories``), the query (``retrieval_query``: the user vector,
or the K interest vectors of multi-vector models, scored by their max), history exclusion
(``exclusion_pairs``) and the exact top-k (``topk_items``, ties to the smaller id).
Evaluation can be sharded over processes by whole query batches (``rank``, ``world_size``, ``gather``) with
results identical to one process's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sinerec import ranking
from sinerec.data.batching import gather_histories
from sinerec.data.preprocess import SequenceData
from sinerec.data.splits import EvalSet
from sinerec.errors import ConfigError
from sinerec.metrics import DEFAULT_METRICS, METRICS, compute_metrics
from sinerec.models.base import SequentialRecommender
from sinerec.ranking import score_items, topk_items

__all__ = ["EvalConfig", "EvalResult", "evaluate", "score_items", "shard_batches", "topk_items"]


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (10, 20, 50, 100)
    metrics: tuple[str, ...] = DEFAULT_METRICS  # names from the table sinerec.metrics.METRICS
    batch_size: int = 512  # queries per batch
    item_chunk: int = 1 << 16  # items scored at once
    # Evaluate a fixed random sample of this many queries (users) instead of all of them (None: all): for
    # catalogues of millions, where full ranking of every held-out user costs more than an epoch. The same
    # queries every epoch and every run (EvalSet.sample, seed sample_seed); metrics.json records how many.
    max_queries: int | None = None
    sample_seed: int = 0

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
        if self.max_queries is not None and (isinstance(self.max_queries, bool) or not isinstance(self.max_queries, int)
                                             or self.max_queries < 1):
            raise ConfigError(f"eval.max_queries: must be an integer >= 1 (or none for all), got {self.max_queries!r}")
        if isinstance(self.sample_seed, bool) or not isinstance(self.sample_seed, int) or self.sample_seed < 0:
            raise ConfigError(f"eval.sample_seed: must be an integer >= 0, got {self.sample_seed!r}")
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
    """Rank all items for every query of ``queries`` (or ``config.max_queries`` of them) and compute the metrics.

    The model sees the last ``max_len`` items of each query's history; with ``exclude_history`` every item of
    the whole history (not only the last max_len) is removed from the ranking.

    Sharded evaluation (``world_size > 1``): this process ranks only the batches :func:`shard_batches` gives
    ``rank``, and ``gather`` (every rank's array in rank order, e.g. ``sinerec.distributed.all_gather_arrays``)
    collects the per-query hit lists, so every rank returns the whole, single-process result.
    """
    config = config or EvalConfig()
    if config.max_queries is not None:
        queries = queries.sample(config.max_queries, config.sample_seed)
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
        user = ranking.retrieval_query(model, model(history))  # (B, D) or (B, K, D)
        ex_rows = ex_items = None
        if exclude_history:
            ex_rows, ex_items = ranking.exclusion_pairs(data.items, hs, he, device)
        ids, _ = ranking.topk_items(user, item_vectors, kmax, ex_rows, ex_items, config.item_chunk)
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
