import numpy as np
import pandas as pd
import torch

from sinerec.data.frame import Interactions
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import ProtocolConfig, leave_one_out
from sinerec.evaluate import EvalConfig, evaluate, score_items, topk_items
from sinerec.models.base import ModelOutput, SequentialRecommender


def test_topk_ties_go_to_smaller_id_and_padding_never_returned():
    items = torch.tensor([[9.0], [1.0], [3.0], [1.0], [3.0], [2.0]])  # row 0 padding has the top score
    ids, scores = topk_items(torch.ones(1, 1), items, 4)
    assert ids.tolist() == [[2, 4, 5, 1]]
    assert scores.tolist() == [[3.0, 3.0, 2.0, 1.0]]
    # the same across item chunks of every size
    for chunk in (1, 2, 3, 5):
        assert topk_items(torch.ones(1, 1), items, 4, chunk_size=chunk)[0].tolist() == [[2, 4, 5, 1]]


def test_topk_exclusion_and_short_lists():
    items = torch.tensor([[0.0], [5.0], [4.0], [3.0]])
    rows, excl = torch.tensor([0, 1, 1]), torch.tensor([1, 2, 3])
    ids, _ = topk_items(torch.ones(2, 1), items, 3, rows, excl, chunk_size=2)
    assert ids.tolist() == [[2, 3, -1], [1, -1, -1]]


def test_topk_equals_bruteforce_topk():
    g = torch.Generator().manual_seed(0)
    user, items = torch.randn(7, 13, generator=g), torch.randn(101, 13, generator=g)
    ids, scores = topk_items(user, items, 17, chunk_size=29)
    full = user @ items.T
    full[:, 0] = -float("inf")
    ref = torch.topk(full, 17)
    assert torch.equal(ids, ref.indices) and torch.allclose(scores, ref.values)


def test_multi_vector_scores_are_max_over_interests():
    user = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, K=2, D=2)
    items = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-1.0, 3.0], [1.0, 1.0]])
    assert score_items(user, items).tolist() == [[0.0, 2.0, 3.0, 1.0]]


class FixedScores(SequentialRecommender):
    """Scores every item by a fixed vector, whatever the history."""

    def __init__(self, scores):
        super().__init__(len(scores) - 1)
        self.scores = torch.tensor(scores, dtype=torch.float32)[:, None]

    def forward(self, history, target=None):
        return ModelOutput(user=torch.ones(history.shape[0], 1))

    def item_embeddings(self):
        return self.scores


def test_evaluate_by_hand_with_and_without_history_exclusion():
    # one user, sequence 1 2 3 4: test target 4, history [1, 2, 3]
    d = preprocess(Interactions(pd.DataFrame({"user": [0] * 4, "item": [1, 2, 3, 4], "timestamp": range(4)})))
    s = leave_one_out(d, ProtocolConfig())
    model = FixedScores([0, 5, 4, 3, 2])  # ranking 1 2 3 4
    cfg = EvalConfig(ks=(1, 4))
    with_ex = evaluate(model, d, s.test, 2, exclude_history=True, config=cfg)
    assert with_ex.means["HR@1"] == 1.0  # 1, 2, 3 are history: target 4 is first
    without = evaluate(model, d, s.test, 2, exclude_history=False, config=cfg)
    assert without.means["HR@1"] == 0.0 and without.means["HR@4"] == 1.0
    assert np.isclose(without.means["NDCG@4"], 1 / np.log2(5))
    assert np.isclose(without.means["MRR@4"], 0.25)


def test_topk_with_many_ties_equals_a_full_stable_sort():
    # small integer vectors: many equal scores, at the k-th place too; plus excluded items
    g = torch.Generator().manual_seed(1)
    user = torch.randint(-2, 3, (9, 3), generator=g).float()
    items = torch.randint(-2, 3, (97, 3), generator=g).float()
    rows, excl = torch.randint(0, 9, (40,), generator=g), torch.randint(1, 97, (40,), generator=g)
    full = user @ items.T
    full[:, 0] = float("-inf")
    full[rows, excl] = float("-inf")
    ref = torch.sort(full, dim=1, descending=True, stable=True)
    ref_ids = torch.where(torch.isinf(ref.values[:, :23]), -1, ref.indices[:, :23])
    for chunk in (7, 31, 200):
        ids, scores = topk_items(user, items, 23, rows, excl, chunk_size=chunk)
        assert torch.equal(ids, ref_ids) and torch.equal(scores, ref.values[:, :23]), chunk


def _sequences(*seqs):
    rows = [(u, item, t) for u, seq in enumerate(seqs) for t, item in enumerate(seq)]
    return preprocess(Interactions(pd.DataFrame(rows, columns=["user", "item", "timestamp"])))


def test_evaluate_multi_target_queries_by_hand():
    """ComiRec-style queries with several targets, history ranked; the model's ranking is 1 2 3 4 5."""
    from sinerec.data.splits import EvalSet

    d = _sequences([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    off = d.offsets
    queries = EvalSet(users=np.array([0, 1]), hist_start=off[:2].copy(), hist_end=off[:2] + 1,
                      target_offsets=np.array([0, 2, 3]), targets=np.array([2, 5, 1]))
    model = FixedScores([0, 5, 4, 3, 2, 1])
    got = evaluate(model, d, queries, 3, exclude_history=False, config=EvalConfig(ks=(1, 2, 5))).means
    # query 0: targets {2, 5} at ranks 2 and 5; query 1: target {1} at rank 1
    assert got["HR@1"] == 0.5 and got["HR@2"] == 1.0 and got["HR@5"] == 1.0
    assert got["Recall@1"] == 0.5 and got["Recall@2"] == 0.75 and got["Recall@5"] == 1.0
    # NDCG divides by the ideal DCG of min(|targets|, K) hits
    idcg2 = 1 + 1 / np.log2(3)
    assert np.isclose(got["NDCG@1"], (0 + 1) / 2)
    assert np.isclose(got["NDCG@2"], ((1 / np.log2(3)) / idcg2 + 1) / 2)
    assert np.isclose(got["NDCG@5"], ((1 / np.log2(3) + 1 / np.log2(6)) / idcg2 + 1) / 2)
    assert np.isclose(got["MRR@5"], (1 / 2 + 1) / 2)


def test_a_repeated_target_is_a_miss_under_history_exclusion():
    """Sequence 1 2 3 2: the test target 2 is also in the history [1, 2, 3]. Excluded from the ranking, it
    can never be hit; with the history ranked it is second."""
    d = _sequences([1, 2, 3, 2])
    s = leave_one_out(d, ProtocolConfig())
    assert s.test.targets.tolist() == [2]
    model = FixedScores([0, 3, 2, 1])  # ranking 1 2 3
    cfg = EvalConfig(ks=(1, 2, 3))
    excluded = evaluate(model, d, s.test, 3, exclude_history=True, config=cfg).means
    assert all(v == 0.0 for v in excluded.values()), excluded
    ranked = evaluate(model, d, s.test, 3, exclude_history=False, config=cfg).means
    assert ranked["HR@1"] == 0.0 and ranked["HR@2"] == 1.0 and np.isclose(ranked["NDCG@2"], 1 / np.log2(3))


def test_max_queries_evaluates_a_fixed_sample_equal_to_the_same_queries_evaluated_alone():
    """eval.max_queries: the metrics of the sample are exactly those of its queries evaluated as a set; the
    sample is the same on every call, keeps the queries' order and carries each query's own targets."""
    from sinerec.data.splits import EvalSet

    d = _sequences([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [2, 3, 4, 5, 1], [3, 1, 5, 4, 2], [4, 5, 1, 2, 3])
    off = d.offsets
    queries = EvalSet(users=np.arange(5), hist_start=off[:5].copy(), hist_end=off[:5] + 2,
                      target_offsets=np.array([0, 1, 3, 4, 6, 7]), targets=np.array([1, 2, 5, 3, 4, 1, 5]))
    sample = queries.sample(3, seed=7)
    again = queries.sample(3, seed=7)
    assert len(sample) == 3 and np.array_equal(sample.users, again.users)
    assert np.all(np.diff(sample.users) > 0)  # original order
    for q, user in enumerate(sample.users):  # each query keeps its own history and targets
        lo, hi = queries.target_offsets[user], queries.target_offsets[user + 1]
        assert sample.targets[sample.target_offsets[q]:sample.target_offsets[q + 1]].tolist() == \
            queries.targets[lo:hi].tolist()
        assert sample.hist_start[q] == queries.hist_start[user] and sample.hist_end[q] == queries.hist_end[user]
    assert queries.sample(5) is queries and queries.sample(9) is queries
    model = FixedScores([0, 5, 4, 3, 2, 1])
    sampled = evaluate(model, d, queries, 3, exclude_history=False, config=EvalConfig(ks=(1, 2), max_queries=3,
                                                                                       sample_seed=7))
    alone = evaluate(model, d, sample, 3, exclude_history=False, config=EvalConfig(ks=(1, 2)))
    assert sampled.n_queries == 3 and sampled.means == alone.means
    assert np.array_equal(sampled.users, sample.users)
    full = evaluate(model, d, queries, 3, exclude_history=False, config=EvalConfig(ks=(1, 2)))
    assert full.n_queries == 5


def test_max_queries_must_be_a_positive_integer():
    import pytest

    from sinerec.errors import ConfigError

    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="eval.max_queries"):
            EvalConfig(max_queries=bad)
