import math

import numpy as np
import pandas as pd
import pytest
import torch

from sinerec.cli import format_metrics_table
from sinerec.config import load_config
from sinerec.data.frame import Interactions
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import ProtocolConfig, leave_one_out
from sinerec.errors import ConfigError
from sinerec.evaluate import EvalConfig, evaluate
from sinerec.metrics import METRICS, Metric, compute_metrics, hit_rate, mrr, ndcg, recall
from sinerec.models.base import ModelOutput, SequentialRecommender


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


def test_the_table_computes_each_metric_with_its_function():
    hits = np.array([[0, 1, 1, 0], [0, 0, 0, 1]], dtype=bool)
    n = np.array([3, 1])
    out = compute_metrics(hits, n, (3,), ("MRR", "Recall"))
    assert list(out) == ["MRR@3", "Recall@3"]  # the order asked for
    assert out["MRR@3"] == pytest.approx([1 / 2, 0.0])
    assert out["Recall@3"] == pytest.approx([2 / 3, 0.0])
    with pytest.raises(ValueError, match="unknown metric 'Precision'"):
        compute_metrics(hits, n, (3,), ("HR", "Precision"))


# --- a new metric is one function plus one table entry --------------------------------------------------------


def precision(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Share of the top k that are targets (a toy metric for the tests below)."""
    return hits[:, :k].sum(axis=1) / k


@pytest.fixture
def with_precision(monkeypatch):
    monkeypatch.setitem(METRICS, "Precision", Metric(precision, "share of the top k that are targets"))


class FixedScores(SequentialRecommender):
    """Scores every item by a fixed vector, whatever the history."""

    def __init__(self, scores):
        super().__init__(len(scores) - 1)
        self.scores = torch.tensor(scores, dtype=torch.float32)[:, None]

    def forward(self, history, target=None):
        return ModelOutput(user=torch.ones(history.shape[0], 1))

    def item_embeddings(self):
        return self.scores


def test_a_registered_metric_is_computed_by_the_evaluator(with_precision):
    # one user, sequence 1 2 3 4: test target 4, history [1, 2, 3]; the model ranks 1 2 4 3
    data = preprocess(Interactions(pd.DataFrame({"user": [0] * 4, "item": [1, 2, 3, 4], "timestamp": range(4)})))
    split = leave_one_out(data, ProtocolConfig())
    config = EvalConfig(ks=(2, 3), metrics=("Precision", "HR"))
    result = evaluate(FixedScores([0, 5, 4, 2, 3]), data, split.test, 2, exclude_history=False, config=config)
    assert list(result.means) == ["Precision@2", "Precision@3", "HR@2", "HR@3"]
    assert result.means["Precision@2"] == 0.0 and result.means["Precision@3"] == pytest.approx(1 / 3)
    assert result.means["HR@3"] == 1.0


def test_a_registered_metric_passes_config_validation(with_precision):
    config = load_config(overrides=["model=mostpop", "eval.metrics=NDCG,Precision", "train.monitor=Precision@10"])
    assert config.eval.metrics == ("NDCG", "Precision")
    with pytest.raises(ConfigError, match="unknown metric 'Precison'; choose from HR, Recall, NDCG, MRR, Precision"):
        load_config(overrides=["eval.metrics=Precison"])


def _metrics_document(protocol: str, names: tuple[str, ...]) -> dict:
    values = {f"{name}@{k}": (i + 1) / 100 + k / 1000 for i, name in enumerate(names) for k in (5, 10)}
    return {"model": "toy", "dataset": {"name": "tiny"}, "protocol": {"name": protocol, "fingerprint": "f00"},
            "valid": values, "test": values}


def test_the_cli_table_prints_metrics_in_table_order(with_precision):
    doc = _metrics_document("comirec", ("Precision", "MRR", "Recall", "HR"))  # not in table order
    lines = format_metrics_table(doc).splitlines()
    assert lines[0] == "toy on tiny (comirec, fingerprint f00): metrics in %"
    assert lines[1:6] == ["valid             @5      @10",  # the name column widened to "Precision"
                          "  HR            4.50     5.00",
                          "  Recall        3.50     4.00",
                          "  MRR           2.50     3.00",
                          "  Precision     1.50     2.00"]
    assert lines[6] == "test              @5      @10" and lines[7:] == lines[2:6]


def test_the_cli_table_leaves_single_target_twins_out_of_leave_one_out():
    doc = _metrics_document("loo", ("HR", "Recall", "Old"))  # "Old": a metric no longer in the table
    lines = format_metrics_table(doc).splitlines()
    assert lines[1:4] == ["valid" + " " * 10 + "@5      @10",  # the usual widths: 8, then 9 per column
                          "  HR" + " " * 9 + "1.50     2.00",
                          "  Old" + " " * 8 + "3.50     4.00"]
    assert [line.split()[0] for line in lines[4:]] == ["test", "HR", "Old"]
