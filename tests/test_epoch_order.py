"""The epoch order: a keyed permutation evaluated per batch, sharded exactly over torchrun ranks."""

from __future__ import annotations

import numpy as np
import pytest

from sinerec.data.batching import TrainBatches
from sinerec.data.permutation import Permutation
from sinerec.data.splits import TrainSet


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 16, 17, 1000, 4097])
def test_the_permutation_is_a_bijection_of_range_n(n):
    values = Permutation(n, seed=3)(np.arange(n))
    assert values.dtype == np.int64
    assert sorted(values.tolist()) == list(range(n))


def test_the_permutation_depends_on_the_seed_alone_and_is_evaluated_pointwise():
    n = 10_007
    whole = Permutation(n, 11)(np.arange(n))
    np.testing.assert_array_equal(whole, Permutation(n, 11)(np.arange(n)))  # a new object, the same order
    picks = np.array([5000, 3, 10_006, 0, 3])
    np.testing.assert_array_equal(Permutation(n, 11)(picks), whole[picks])
    other = Permutation(n, 12)(np.arange(n))
    assert (other != whole).mean() > 0.99  # another seed: another order
    assert (whole != np.arange(n)).mean() > 0.99  # and a shuffle, not the identity
    with pytest.raises(IndexError, match=r"\[0, 10007\)"):
        Permutation(n, 11)(np.array([n]))


def test_the_permutation_looks_uniform():
    # where position 0 lands over many seeds: each of 8 slots about 1/8 of the time
    landing = np.array([Permutation(8, s)(np.array([0]))[0] for s in range(4000)])
    counts = np.bincount(landing, minlength=8)
    assert counts.min() > 400 and counts.max() < 600, counts


def train_set(n: int) -> TrainSet:
    return TrainSet(positions=np.arange(n), starts=np.zeros(n, dtype=np.int64), users=np.arange(1),
                    item_counts=np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_ranks_shard_is_exactly_its_stride_of_the_single_process_order(world):
    n, seed, epoch = 1001, 7, 3
    single = Permutation(n, seed + epoch)(np.arange(n))
    shards = []
    for rank in range(world):
        batches = TrainBatches(np.arange(n), train_set(n), 4, 10, seed=seed, rank=rank, world_size=world)
        order = batches.order(epoch)
        np.testing.assert_array_equal(order, single[rank::world])
        drawn = np.concatenate([target.numpy() for _, target in batches.epoch(epoch)])  # items == positions
        np.testing.assert_array_equal(drawn, order)
        assert batches.num_batches(epoch) == -(-len(order) // 10)
        shards.append(order)
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))  # the union: every example once


def test_the_ranks_batches_b_together_are_the_single_process_batch_b():
    n, world, per_rank = 103, 2, 8
    single = TrainBatches(np.arange(n), train_set(n), 4, per_rank * world, seed=1)
    ranks = [TrainBatches(np.arange(n), train_set(n), 4, per_rank, seed=1, rank=r, world_size=world)
             for r in range(world)]
    for b, (_, target) in enumerate(single.epoch(5)):
        together = sorted(t for rank in ranks for _, y in [list(rank.epoch(5))[b]] for t in y.tolist())
        assert together == sorted(target.tolist())


def test_an_epoch_never_builds_the_whole_order(monkeypatch):
    n = 100_000
    sizes = []
    original = Permutation.__call__

    def spy(self, positions):
        sizes.append(len(positions))
        return original(self, positions)

    monkeypatch.setattr(Permutation, "__call__", spy)
    batches = TrainBatches(np.arange(n), train_set(n), 4, 256, seed=0, rank=1, world_size=2)
    for _ in batches.epoch(0):
        pass
    assert max(sizes) == 256 and sum(sizes) == n // 2
