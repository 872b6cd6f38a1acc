import math

import numpy as np
import pytest

from sinerec.metrics import compute_metrics, hit_rate, mrr, ndcg, recall


def test_single_target_by_hand():
    # query 0: target at rank 2; query 1: target at rank 5; query 2: not in the list
    hits = np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=bool)
    n = np.array([1, 1, 1])
    assert hit_rate(hits, 2).tolist() == [1, 0, 0]
    assert hit_rate(hits, 5).tolist() == [1, 1, 0]
    assert ndcg(hits, n, 5) == pytest.approx([1 / math.log2(3), 1 / math.log2(6), 0.0])
    assert ndcg(hits, n, 4) == pytest.approx([1 / math.log2(3), 0.0, 0.0])
    assert mrr(hits, 5) == pytest.approx([0.5, 0.2, 0.0])
    assert recall(hits, n, 5).tolist() == [1, 1, 0]


def test_multi_target_by_hand():
    # 3 targets, hits at ranks 1 and 3 of a 4-long list
    hits = np.array([[1, 0, 1, 0]], dtype=bool)
    n = np.array([3])
    assert recall(hits, n, 4) == pytest.approx([2 / 3])
    assert recall(hits, n, 2) == pytest.approx([1 / 3])
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg(hits, n, 4) == pytest.approx([dcg / idcg])
    # at K = 2 the ideal holds min(3, 2) = 2 hits
    assert ndcg(hits, n, 2) == pytest.approx([1 / (1 + 1 / math.log2(3))])
    assert hit_rate(hits, 4).tolist() == [1]
    assert mrr(hits, 4) == pytest.approx([1.0])


def test_compute_metrics_keys_and_too_short_list():
    hits = np.zeros((2, 10), dtype=bool)
    out = compute_metrics(hits, np.array([1, 1]), (5, 10))
    assert set(out) == {f"{m}@{k}" for m in ("HR", "Recall", "NDCG", "MRR") for k in (5, 10)}
    with pytest.raises(ValueError, match="fewer than the largest cut-off"):
        compute_metrics(hits, np.array([1, 1]), (20,))
