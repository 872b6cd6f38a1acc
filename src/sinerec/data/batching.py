"""Turning positions into padded history tensors, vectorised (no Python loop over examples).

"The last T items of a history, left-padded with 0" is :func:`gather_histories`; training batches, the
offline evaluator, the server (:func:`left_padded`), the export and the explanations (:func:`user_windows`)
all build their windows with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from sinerec.data.permutation import Permutation
from sinerec.data.splits import TrainSet

if TYPE_CHECKING:
    from sinerec.data.preprocess import SequenceData

__all__ = ["TrainBatches", "gather_histories", "left_padded", "user_windows"]


def gather_histories(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """The last ``max_len`` items of ``items[start:end]`` for each pair, left-padded with 0.

    Args:
        items: (N,) item ids (``SequenceData.items``).
        starts, ends: (B,) absolute bounds; the window is ``items[max(start, end - max_len):end]``.
    Returns:
        (B, max_len) int64, most recent item in the last column.
    """
    idx = ends[:, None] - max_len + np.arange(max_len)[None, :]  # (B, T)
    valid = idx >= starts[:, None]
    out = np.where(valid, items[np.clip(idx, 0, None)], 0)
    return out.astype(np.int64, copy=False)


def left_padded(histories: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """:func:`gather_histories` for one array of item ids per history: (B, max_len) int64."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    if not lengths.any():
        return np.zeros((len(lengths), max_len), dtype=np.int64)
    ends = np.cumsum(lengths)
    items = np.concatenate([np.asarray(h, dtype=np.int64).reshape(-1) for h in histories])
    return gather_histories(items, ends - lengths, ends, max_len)


def user_windows(data: SequenceData, users: np.ndarray, max_len: int) -> np.ndarray:
    """The last ``max_len`` items of each user's whole sequence, (U, max_len) int64, as served."""
    return gather_histories(data.items, data.offsets[users], data.offsets[users + 1], max_len)


class TrainBatches:
    """Iterates over (history (B, T), target (B,)) LongTensor batches of a TrainSet.

    The epoch's global order is ``order[i] = Permutation(n, seed + epoch)(i)`` (``sinerec.data.permutation``,
    a keyed pseudo-random permutation of the n training examples), so an epoch's order is a function of
    (seed, epoch) alone and resuming mid-run reproduces it. ``rank``/``world_size`` take the disjoint shard
    ``order[rank::world_size]`` (used by distributed training): batch b of rank r is
    ``order[r + world_size * j]`` for j in ``[b * batch_size, (b + 1) * batch_size)``, so the ranks' batches
    b together are the single process's batch b of ``batch_size * world_size`` examples. Each batch's
    positions are computed when it is drawn: no process holds the epoch's order (4-8 bytes per example).
    """

    def __init__(self, items: np.ndarray, train: TrainSet, max_len: int, batch_size: int, seed: int,
                 shuffle: bool = True, drop_last: bool = False, rank: int = 0, world_size: int = 1) -> None:
        self.items = items
        self.train = train
        self.max_len = max_len
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size

    def shard_size(self) -> int:
        """Examples in this rank's shard of an epoch."""
        return len(range(self.rank, len(self.train), self.world_size))

    def selection(self, epoch: int, lo: int, hi: int, permutation: Permutation | None = None) -> np.ndarray:
        """Training-example indices ``lo:hi`` of this rank's shard of ``epoch``'s order (int64);
        ``permutation`` is the epoch's (:meth:`permutation`), made here when not given."""
        global_positions = self.rank + self.world_size * np.arange(lo, min(hi, self.shard_size()), dtype=np.int64)
        if not self.shuffle:
            return global_positions
        return (permutation if permutation is not None else self.permutation(epoch))(global_positions)

    def permutation(self, epoch: int) -> Permutation:
        """``epoch``'s order of the training examples: ``order[i] = permutation(epoch)(i)``."""
        return Permutation(len(self.train), self.seed + epoch)

    def order(self, epoch: int) -> np.ndarray:
        """This rank's whole shard of ``epoch``'s order (for tests and inspection: :meth:`epoch` never builds
        it)."""
        return self.selection(epoch, 0, self.shard_size())

    def num_batches(self, epoch: int = 0) -> int:
        n = self.shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int):  # -> Iterator[tuple[torch.Tensor, torch.Tensor]]
        permutation = self.permutation(epoch)
        for b in range(self.num_batches(epoch)):
            sel = self.selection(epoch, b * self.batch_size, (b + 1) * self.batch_size, permutation)
            pos = self.train.positions[sel]
            hist = gather_histories(self.items, self.train.starts[sel], pos, self.max_len)
            yield torch.from_numpy(hist), torch.from_numpy(self.items[pos])
