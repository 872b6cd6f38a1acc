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

    Shuffled each epoch by a seeded generator (epoch e uses ``seed + e``), so an epoch's order is a
    function of (seed, epoch) alone and resuming mid-run reproduces it. ``rank``/``world_size`` take a
    disjoint shard of every epoch's permutation (used by distributed training).
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

    def _order(self, epoch: int) -> np.ndarray:
        # int32 positions when they fit: half the memory of each process's permutation, the same order
        # (the generator draws the same swaps whatever the array's type)
        n = len(self.train)
        order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        if self.shuffle:
            np.random.default_rng(self.seed + epoch).shuffle(order)  # in place: what permutation(n) does
        return order[self.rank::self.world_size]

    def num_batches(self, epoch: int = 0) -> int:
        n = len(range(self.rank, len(self.train), self.world_size))  # this shard's size, without the order
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int):  # -> Iterator[tuple[torch.Tensor, torch.Tensor]]
        order = self._order(epoch)
        n_batches = self.num_batches(epoch)
        for b in range(n_batches):
            sel = order[b * self.batch_size:(b + 1) * self.batch_size]
            pos = self.train.positions[sel]
            hist = gather_histories(self.items, self.train.starts[sel], pos, self.max_len)
            yield torch.from_numpy(hist), torch.from_numpy(self.items[pos])
