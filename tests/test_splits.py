import numpy as np
import pandas as pd
import pytest

from sinerec.data.batching import TrainBatches, gather_histories
from sinerec.data.frame import Interactions
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import ProtocolConfig, comirec_split, leave_one_out
from sinerec.errors import ConfigError


def toy():
    # user 0: items 1 2 3 4 5; user 1: items 6 7 (too short for loo queries); user 2: items 3 6 1
    rows = [(0, i, t) for t, i in enumerate([1, 2, 3, 4, 5])] + [(1, 6, 0), (1, 7, 1)] + \
        [(2, 3, 0), (2, 6, 1), (2, 1, 2)]
    return preprocess(Interactions(pd.DataFrame(rows, columns=["user", "item", "timestamp"])))


def test_leave_one_out_exact():
    d = toy()
    assert d.items.tolist() == [1, 2, 3, 4, 5, 6, 7, 3, 6, 1]
    s = leave_one_out(d, ProtocolConfig())
    # training: user 0 targets at positions 1, 2 (items 2, 3); user 1 (train only) position 6; user 2 none
    assert s.train.positions.tolist() == [1, 2, 6]
    assert s.train.starts.tolist() == [0, 0, 5]
    assert s.valid.users.tolist() == [0, 2]
    assert s.valid.targets.tolist() == [4, 6]
    assert s.valid.hist_start.tolist() == [0, 7] and s.valid.hist_end.tolist() == [3, 8]
    assert s.test.targets.tolist() == [5, 1]
    assert s.test.hist_end.tolist() == [4, 9]
    # popularity over the training part: 1,2,3 (user 0) + 6,7 (user 1) + 3 (user 2)
    assert s.train.item_counts.tolist() == [0, 1, 1, 2, 0, 0, 1, 1]
    assert s.protocol.excludes_history


def test_histories_are_left_padded_windows():
    d = toy()
    s = leave_one_out(d, ProtocolConfig())
    h = gather_histories(d.items, s.test.hist_start, s.test.hist_end, 3)
    assert h.tolist() == [[2, 3, 4], [0, 3, 6]]
    batches = list(TrainBatches(d.items, s.train, max_len=2, batch_size=2, seed=0, shuffle=False).epoch(0))
    assert [b[0].tolist() for b in batches] == [[[0, 1], [1, 2]], [[0, 6]]]
    assert [b[1].tolist() for b in batches] == [[2, 3], [7]]


def test_shuffled_batches_cover_each_example_once_and_are_seeded():
    d = toy()
    s = leave_one_out(d, ProtocolConfig())
    b1 = TrainBatches(d.items, s.train, 2, batch_size=2, seed=5)
    targets = sorted(t for _, y in b1.epoch(0) for t in y.tolist())
    assert targets == [2, 3, 7]
    again = [y.tolist() for _, y in TrainBatches(d.items, s.train, 2, 2, seed=5).epoch(0)]
    assert again == [y.tolist() for _, y in b1.epoch(0)]
    shards = [sorted(t for _, y in TrainBatches(d.items, s.train, 2, 2, 5, rank=r, world_size=2).epoch(0)
                     for t in y.tolist()) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == [2, 3, 7] and len(shards[0]) == 2


def test_comirec_split_exact():
    rows = [(u, 1 + (u + i) % 9, i) for u in range(10) for i in range(5 + u % 3)]
    d = preprocess(Interactions(pd.DataFrame(rows, columns=["user", "item", "timestamp"])))
    cfg = ProtocolConfig(name="comirec", seed=3)
    s = comirec_split(d, cfg)
    perm = np.random.default_rng(3).permutation(10)
    assert s.train.users.tolist() == sorted(perm[:8].tolist())
    assert s.valid.users.tolist() == sorted(perm[8:9].tolist())
    assert s.test.users.tolist() == sorted(perm[9:].tolist())
    u = int(s.test.users[0])
    seq = d.sequence(u)
    k = int(len(seq) * 0.8)
    assert s.test.hist_start[0] == d.offsets[u] and s.test.hist_end[0] == d.offsets[u] + k
    assert s.test.targets.tolist() == sorted(set(seq[k:].tolist()))
    assert not s.protocol.excludes_history
    assert len(s.train) == sum(len(d.sequence(int(x))) - 1 for x in s.train.users)
    # the shuffle seed changes the split and its fingerprint
    other = comirec_split(d, ProtocolConfig(name="comirec", seed=4))
    assert other.fingerprint != s.fingerprint


def test_protocol_validation():
    with pytest.raises(ConfigError, match="protocol.name"):
        ProtocolConfig(name="random")
    with pytest.raises(ConfigError, match="valid_fraction"):
        ProtocolConfig(valid_fraction=0.6, test_fraction=0.5)


def test_comirec_split_edge_cases_and_the_80_20_rule_on_validation_and_test_users():
    """Users of 1 to 6 and 10 items (one with repeats), most of them held out: a held-out user's input is
    its first int(0.8 n) items, at least one, leaving at least one target; targets are deduplicated; a
    one-item user cannot be evaluated and is left out."""
    lengths = [1, 2, 3, 4, 5, 6, 10, 10]
    seqs = [[1 + (u + i) % 7 for i in range(n)] for u, n in enumerate(lengths)]
    seqs[7] = [1, 2, 3, 4, 5, 6, 7, 7, 7, 1]  # targets (last 2): 7, 1 -> deduplicated {1, 7}
    rows = [(u, item, t) for u, seq in enumerate(seqs) for t, item in enumerate(seq)]
    d = preprocess(Interactions(pd.DataFrame(rows, columns=["user", "item", "timestamp"])))
    s = comirec_split(d, ProtocolConfig(name="comirec", seed=0, valid_fraction=0.45, test_fraction=0.45))
    expected_input = {1: None, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 10: 8}
    held = [*s.valid.users.tolist(), *s.test.users.tolist()]
    assert len(s.valid.users) >= 3 and len(s.test.users) >= 3  # the validation users follow the rule too
    for part in (s.valid, s.test):
        for q, u in enumerate(part.users.tolist()):
            seq = d.sequence(u).tolist()
            n_input = expected_input[len(seq)]
            assert n_input is not None, f"user {u} with {len(seq)} item(s) was held out"
            assert part.hist_start[q] == d.offsets[u] and part.hist_end[q] == d.offsets[u] + n_input
            targets = part.targets[part.target_offsets[q]:part.target_offsets[q + 1]]
            assert sorted(targets.tolist()) == sorted(set(seq[n_input:]))
    one_item = [u for u in range(d.num_users) if len(d.sequence(u)) == 1]
    assert one_item and not set(one_item) & set(held)
    assert len(held) + len(s.train.users) + len([u for u in one_item if u not in s.train.users]) == d.num_users
