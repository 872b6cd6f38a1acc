"""sinerec.explain: NMI on hand-computed cases, collapse checks, and the report of a tiny trained SINE."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from conftest import train_run

from sinerec.cli import main
from sinerec.data.synthetic import planted_concepts
from sinerec.errors import SinerecError
from sinerec.explain import (
    collapse_warnings,
    duplicate_prototypes,
    expand_multilabel,
    explain_run,
    item_nmi,
    nmi,
    random_assignment_nmi,
    write_report,
)
from sinerec.runs import load_run

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="the report's figures need matplotlib (pip install 'sinerec[explain]')")

# --- NMI, by hand ---------------------------------------------------------------------------------------


def test_identical_partitions_up_to_renaming_give_one():
    assert nmi([0, 0, 1, 2, 2], ["x", "x", "y", "z", "z"]) == pytest.approx(1.0)


def test_independent_partitions_give_zero():
    # every (a, b) combination equally often: p(a, b) = p(a) p(b), so I(A; B) = 0
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_single_cluster_cases():
    assert nmi([3, 3, 3], ["a", "a", "a"]) == 1.0  # both trivial: identical partitions
    assert nmi([3, 3, 3, 3], ["a", "a", "b", "b"]) == pytest.approx(0.0)  # one trivial: no information


def test_worked_example_with_entropies_written_out():
    a = [0, 0, 0, 1, 1, 1]  # two clusters of 3: H(A) = ln 2
    b = [0, 0, 1, 1, 2, 2]  # three clusters of 2: H(B) = ln 3
    # joint counts: (0,0) 2, (0,1) 1, (1,1) 1, (1,2) 2 of 6; p(a) p(b) = 1/2 * 1/3 = 1/6 for every cell
    # I = 2 * (1/3) ln((1/3) / (1/6)) + 2 * (1/6) ln((1/6) / (1/6)) = (2/3) ln 2
    h_a, h_b = math.log(2), math.log(3)
    mutual = 2 / 3 * math.log(2)
    expected = mutual / ((h_a + h_b) / 2)  # = (4/3) ln 2 / ln 6
    assert nmi(a, b) == pytest.approx(expected, rel=1e-12)
    assert nmi(b, a) == pytest.approx(expected, rel=1e-12)  # symmetric
    assert expected == pytest.approx(0.51580, abs=1e-5)  # (4/3) ln 2 / ln 6


def test_multilabel_items_weigh_one_each():
    # item 0 in cluster 0 with categories {a, b}, item 1 in cluster 1 with {b}
    clusters, labels, weights = expand_multilabel([0, 1], [("a", "b"), ("b",)])
    assert clusters.tolist() == [0, 0, 1] and labels.tolist() == ["a", "b", "b"]
    assert weights.tolist() == [0.5, 0.5, 1.0]
    # p(0,a) = p(0,b) = 1/4, p(1,b) = 1/2; p(cluster) = 1/2, 1/2; p(a) = 1/4, p(b) = 3/4
    h_clusters = math.log(2)
    h_labels = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    mutual = (0.25 * math.log(0.25 / (0.5 * 0.25)) + 0.25 * math.log(0.25 / (0.5 * 0.75))
              + 0.5 * math.log(0.5 / (0.5 * 0.75)))
    assert item_nmi([0, 1], [("a", "b"), ("b",)]) == pytest.approx(mutual / ((h_clusters + h_labels) / 2))


def test_single_label_items_reduce_to_plain_nmi():
    a = [0, 1, 1, 2, 0, 2, 1]
    b = ["x", "y", "y", "x", "x", "z", "z"]
    assert item_nmi(a, [(x,) for x in b]) == pytest.approx(nmi(a, b))
    assert item_nmi(a, b) == pytest.approx(nmi(a, b))  # scalars are one-label items


def test_random_assignment_nmi_is_near_zero_for_many_items():
    rng = np.random.default_rng(7)
    labels = [(f"g{x}",) for x in rng.integers(0, 5, 20_000)]
    sizes = [2000] * 10
    chance = random_assignment_nmi(sizes, labels, seed=1, repeats=5)
    assert len(chance.values) == 5
    # the bias of a random partition's NMI is O(C * L / N): about 1e-3 here
    assert 0 <= chance.mean < 0.003 and chance.std < 0.001


def test_random_assignment_nmi_checks_sizes():
    with pytest.raises(ValueError, match="sum to 3"):
        random_assignment_nmi([1, 2], [("a",)] * 4)


# --- collapse checks ------------------------------------------------------------------------------------


def test_duplicate_prototypes_and_collapse_warnings():
    protos = np.eye(5, 3)  # rows 3 and 4 are zero vectors, cosine 0 with everything
    protos[4] = [1.0, 0.01, 0.0]  # near-duplicate of row 0
    pairs = duplicate_prototypes(protos, 0.95)
    assert [(a, b) for a, b, _ in pairs] == [(0, 4)]
    assert collapse_warnings(np.array([5, 4, 3, 2, 1]), np.eye(5), num_interests=2) == []
    warnings = collapse_warnings(np.array([9, 0, 0, 0, 1]), protos, num_interests=2)
    assert any("only 2 of 5 concepts" in w for w in warnings)
    assert any("near-duplicate" in w and "0~4" in w for w in warnings)
    one_hot = collapse_warnings(np.array([5, 4, 3, 2, 1]), np.eye(5), num_interests=2, aggregation_peak=0.99)
    assert len(one_hot) == 1 and "nearly one-hot" in one_hot[0]
    assert collapse_warnings(np.array([5, 4, 3, 2, 1]), np.eye(5), num_interests=2, aggregation_peak=0.7) == []


# --- the report on a tiny trained SINE -------------------------------------------------------------------


SINE_SMALL = ("model_params.dim=32", "model_params.num_concepts=20", "model_params.num_interests=2")


def _train_run(run_dir, overrides=SINE_SMALL):
    log = planted_concepts(n_users=300, n_items=200, n_concepts=20, length=30, seed=0)
    return train_run(run_dir, ['data.dataset="synthetic"', "data.max_len=20", "train.epochs=2", "train.lr=0.01",
                               "protocol.exclude_history=false", *overrides], log)


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    return _train_run(tmp_path_factory.mktemp("explain") / "run")


@pytest.mark.slow
@needs_matplotlib
def test_cli_explain_writes_report_figures_and_numbers(sine_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["explain", "--run", str(sine_run), "--out", str(out), "--users", "2", "--repeats", "10"]) == 0
    assert "NMI of the concepts" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    doc = json.loads((out / "explain.json").read_text())
    for name in ("curves", "concepts", "prototypes", "nmi", "concept_categories"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}.png" in doc["figures"]
    assert len([f for f in doc["figures"] if "/user_" in f]) == 2
    assert html.count("data:image/png;base64,") == len(doc["figures"])  # self-contained
    # planted clusters are the items' categories: the learned concepts must find them, far above chance
    n = doc["nmi"]
    assert n["n_items"] == 200 and n["n_categories"] == 20 and len(n["random_values"]) == 10
    assert n["value"] > n["random_mean"] + 5 * n["random_std"] and n["value"] > n["random_mean"] + 0.1, n
    assert len(doc["concepts"]) == 20 and sum(doc["activation"]["counts"]) == 2 * 300
    usage = doc["activation"]
    assert len(usage["interests_expressed"]) == 3 and sum(usage["interests_expressed"]) == 300  # 0, 1, 2 of K
    for key in ("aggregation_peak_histogram", "intention_peak_histogram"):
        assert sum(usage[key]["counts"]) == 300 and usage[key]["edges"][0] == 0.5 and usage[key]["edges"][-1] == 1
    assert "interests expressed by the history" in html
    user = doc["users"][0]
    assert len(user["interests"]) == 2 and len(user["recommendations"]) == 10
    assert sum(len(s["recommendations"]) for s in user["interests"]) == 10
    for step in user["history"]:
        assert sum(step["intention"]) == pytest.approx(1.0, abs=1e-3)


def test_explanations_are_deterministic(sine_run):
    run = load_run(sine_run)
    doc_a, doc_b = (explain_run(run, n_users=2, repeats=3, seed=5) for _ in range(2))
    assert doc_a["nmi"] == doc_b["nmi"] and doc_a["users"] == doc_b["users"]
    assert doc_a["concepts"] == doc_b["concepts"]


@needs_matplotlib
def test_non_sine_run_gets_the_curves_only(tmp_path):
    run_dir = _train_run(tmp_path / "pop", ["model=mostpop", "train.epochs=1"])
    report = write_report(run_dir, n_users=1)
    assert report == run_dir / "explain" / "report.html"
    doc = json.loads((report.parent / "explain.json").read_text())
    assert "SINE runs only" in doc["note"] and "nmi" not in doc
    from sinerec.explain import require_sine

    with pytest.raises(SinerecError, match="no concept prototypes"):
        require_sine(load_run(run_dir))



def test_interests_expressed_counts_distinct_winning_interests_of_real_items():
    from sinerec.explain import interests_expressed

    p = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.0, 0.0, 1.0]],   # 2 real: k 0, 1
                      [[0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],   # all k 2
                      [[0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.5, 0.4, 0.1]]])  # padding only
    real = torch.tensor([[False, True, True, False], [True, True, True, True], [False] * 4])
    # row 0: items 1 and 2 win k = 1 and k = 0 (item 3's k = 2 is padding); row 1: only k = 2; row 2: none
    assert interests_expressed(p, real).tolist() == [2, 1, 0]


def test_usage_histogram_bins_peaks_over_one_over_k_to_one():
    from sinerec.explain import usage_histogram

    hist = usage_histogram(np.array([0.25, 0.26, 0.6, 1.0, 0.2]), num_interests=4, bins=3)
    assert hist["edges"] == [0.25, 0.5, 0.75, 1.0]
    assert hist["counts"] == [3, 1, 1]  # 0.2 (below 1/K, rounding) counts in the first bin
