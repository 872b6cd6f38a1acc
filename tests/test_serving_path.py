"""Serving is the evaluator by construction: the Recommender, the HTTP server and the exact index call the very
function objects the offline evaluator calls (spied on here), not look-alikes that happen to agree."""

import warnings

import numpy as np
import pytest
import torch
from conftest import train_run

import sinerec.data.batching as batching
import sinerec.evaluate as evaluate_module
from sinerec import ranking
from sinerec.data.splits import EvalSet
from sinerec.data.synthetic import planted_concepts
from sinerec.evaluate import EvalConfig, evaluate
from sinerec.recommend import Recommender, RecommendRequest
from sinerec.retrieval import IndexSettings, build_index
from sinerec.runs import load_run

MAX_LEN, K, USERS = 7, 3, (0, 5, 13)


@pytest.fixture(scope="module", params=["sine", "comirec-sa"])
def run(request, tmp_path_factory):
    log = planted_concepts(n_users=40, n_items=35, n_concepts=5, length=15, seed=4)
    params = ["model_params.dim=13", f"model_params.num_interests={K}"]
    if request.param == "sine":
        params.append("model_params.num_concepts=11")
    folder = tmp_path_factory.mktemp("path") / request.param
    return load_run(train_run(folder, [f"model={request.param}", f"data.max_len={MAX_LEN}", *params], log))


@pytest.fixture
def spies(monkeypatch):
    """Wrap the evaluator's ranking functions; each call appends (name, args, result) to the returned list."""
    calls: list[tuple[str, tuple, object]] = []
    for name in ("retrieval_query", "exclusion_pairs", "topk_items", "interest_behind"):
        original = getattr(ranking, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            result = _original(*args, **kwargs)
            calls.append((_name, args, result))
            return result

        monkeypatch.setattr(ranking, name, spy)
    return calls


def whole_history_queries(run) -> EvalSet:
    d, users = run.data, np.array(USERS)
    return EvalSet(users=users, hist_start=d.offsets[users], hist_end=d.offsets[users + 1],
                   target_offsets=np.arange(len(users) + 1), targets=d.items[d.offsets[users]])


def history_ids(run, user: int) -> list:
    return [int(run.data.item_ids[i]) for i in run.data.sequence(user)]


def test_evaluator_and_recommender_call_the_same_ranking_functions(run, spies):
    evaluate(run.model, run.data, whole_history_queries(run), MAX_LEN, exclude_history=True,
             config=EvalConfig(ks=(9,), batch_size=len(USERS)))
    offline = {name: (args, result) for name, args, result in spies}
    spies.clear()
    recs = Recommender(run).recommend_batch([RecommendRequest(history_ids(run, u), k=9) for u in USERS])
    served = {name: (args, result) for name, args, result in spies}
    assert {"retrieval_query", "exclusion_pairs", "topk_items"} <= offline.keys() & served.keys()
    # the same query vectors reach the same top-k function, with the same exclusion and the same answer
    assert torch.equal(offline["retrieval_query"][1], served["retrieval_query"][1])
    assert pairs(*offline["exclusion_pairs"][1]) == pairs(*served["exclusion_pairs"][1])
    assert torch.equal(offline["topk_items"][1][0], served["topk_items"][1][0])
    served_ids = [[int(np.flatnonzero(run.data.item_ids == i.item_id)[0]) for i in r.items] for r in recs]
    assert served_ids == offline["topk_items"][1][0].tolist()


def pairs(rows: torch.Tensor, items: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(rows.tolist(), items.tolist(), strict=True))


def test_the_window_is_gather_histories(run, monkeypatch):
    seen = []
    original = batching.gather_histories
    monkeypatch.setattr(batching, "gather_histories", lambda *a: seen.append(a) or original(*a))
    Recommender(run).recommend(history_ids(run, 5), k=3)
    assert len(seen) == 1 and seen[0][3] == MAX_LEN
    np.testing.assert_array_equal(seen[0][0], run.data.sequence(5))
    assert evaluate_module.gather_histories is original  # the evaluator's window is that same function


def test_the_interest_behind_an_item_is_one_function(run, spies):
    rec = Recommender(run).recommend(history_ids(run, 13), k=6)
    (_, args, result), = [c for c in spies if c[0] == "interest_behind"]
    assert [i.interest for i in rec.items] == result[0].tolist()


def test_the_server_answers_through_the_evaluators_top_k(run, spies):
    pytest.importorskip("fastapi", reason="the server needs fastapi (pip install 'sinerec[serve]')")
    with warnings.catch_warnings():  # recent Starlette deprecates its httpx-based TestClient; it still works
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from sinerec.serve import create_app

    answer = TestClient(create_app(run)).post("/recommend", json={"history": history_ids(run, 0), "k": 4}).json()
    (_, _, (ids, _)), = [c for c in spies if c[0] == "topk_items"]
    assert [item["item_id"] for item in answer["items"]] == [int(run.data.item_ids[i]) for i in ids[0]]


def test_the_exact_index_is_topk_items(spies):
    g = torch.Generator().manual_seed(5)
    items, queries = torch.randn(38, 13, generator=g), torch.randn(3, K, 13, generator=g)
    index = build_index(items, IndexSettings())  # the default: exact
    ids, _ = index.search(queries[:, 0], 5, [[1, 2], [], [7]])
    multi_ids, _, _ = index.search_multi(queries, 5)
    topk = [(args, result) for name, args, result in spies if name == "topk_items"]
    assert [name for name, _, _ in spies] == ["exclusion_pairs", "topk_items", "exclusion_pairs", "topk_items",
                                              "interest_behind"]
    assert np.array_equal(ids, topk[0][1][0].numpy()) and np.array_equal(multi_ids, topk[1][1][0].numpy())
    assert topk[0][0][3].tolist() == [0, 0, 2] and topk[0][0][4].tolist() == [1, 2, 7]  # the exclusion pairs
    assert topk[1][0][0].shape == (3, K, 13)  # max over the interests inside the evaluator's ranking
