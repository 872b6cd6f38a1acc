"""sinerec.explorer's JSON routes and page, in process (the browser test drives the real server)."""

import numpy as np
import pytest
from conftest import train_run

from sinerec.data.synthetic import planted_concepts
from sinerec.runs import load_run

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def _run(run_dir, overrides):
    log = planted_concepts(n_users=50, n_items=30, n_concepts=3, length=12, seed=2)
    return load_run(train_run(run_dir, ['data.dataset="synthetic"', "data.max_len=10", *overrides], log))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from sinerec.serve import create_app

    run = _run(tmp_path_factory.mktemp("explorer") / "run",
               ["model_params.dim=8", "model_params.num_concepts=5", "model_params.num_interests=2"])
    return TestClient(create_app(run))


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "sinerec explorer" in page.text and '"recommend", { method: "POST"' in page.text
    info = client.get("/api/info").json()
    assert info == {"model": "sine", "dataset": "synthetic-concepts", "num_items": 30, "num_users": 50,
                    "max_len": 10, "num_interests": 2, "num_concepts": 5, "exclude_history": True,
                    "has_titles": True, "has_categories": True, "has_concepts": True}


def test_item_search_and_lookup(client):
    found = client.get("/api/items", params={"query": "ITEM 2", "limit": 50}).json()["items"]
    # titles "item 2", "item 20".."item 29", case-insensitive, most popular first
    assert sorted(x["item_id"] for x in found) == [2] + list(range(20, 30))
    counts = [x["count"] for x in found]
    assert counts == sorted(counts, reverse=True)
    by_id = client.get("/api/items", params={"query": "2", "limit": 50}).json()["items"]
    assert by_id[0]["item_id"] == 2 and sorted(x["item_id"] for x in by_id) == [2, 12] + list(range(20, 30))
    popular = client.get("/api/items", params={"limit": 3}).json()["items"]
    assert len(popular) == 3 and popular[0]["count"] >= popular[1]["count"] >= popular[2]["count"]
    looked_up = client.get("/api/items", params={"ids": "3,999,1"}).json()
    assert [x["item_id"] for x in looked_up["items"]] == [3, 1] and looked_up["unknown"] == ["999"]
    assert looked_up["items"][0] == {"item_id": 3, "title": "item 3", "categories": ["c0"],
                                     "count": looked_up["items"][0]["count"]}


def test_users(client):
    user = client.get("/api/users/7").json()
    assert user["user_id"] == 7 and user["length"] == 12 and len(user["history"]) == 12
    assert client.get("/api/users/random").json()["length"] == 12
    missing = client.get("/api/users/nobody")
    assert missing.status_code == 404 and "unknown user id" in missing.json()["detail"]


def test_concept_pool(client):
    pool = client.get("/api/concepts").json()
    assert pool["n_users"] == 50 and [c["concept"] for c in pool["concepts"]] == list(range(5))
    assert sum(c["users"] for c in pool["concepts"]) == 50 * 2  # K = 2 activations per user
    assert sum(c["n_items"] for c in pool["concepts"]) == 30
    cosines = [x["cosine"] for x in pool["concepts"][0]["top_items"]]
    assert len(cosines) == 12 and cosines == sorted(cosines, reverse=True)
    # every concept holds items here (so nothing below is skipped); each item has one category, so a
    # concept's category shares are counts over its items: whole counts summing to n_items, best first
    assert all(c["n_items"] > 0 for c in pool["concepts"])
    for c in pool["concepts"]:
        shares = [share for _, share in c["top_categories"]]
        counts = [share * c["n_items"] for share in shares]
        assert np.allclose(counts, np.round(counts), atol=2e-3), c
        assert round(sum(counts)) == c["n_items"] and np.isclose(sum(shares), 1.0, atol=1e-3), c
        assert shares == sorted(shares, reverse=True) and len({name for name, _ in c["top_categories"]}) == len(shares)


def test_non_sine_runs_have_no_concept_pool(tmp_path):
    from fastapi.testclient import TestClient

    from sinerec.serve import create_app

    client = TestClient(create_app(_run(tmp_path / "pop", ["model=mostpop"])))
    info = client.get("/api/info").json()
    assert info["has_concepts"] is False and info["num_interests"] is None
    response = client.get("/api/concepts")
    assert response.status_code == 404 and "SINE only" in response.json()["detail"]


def test_the_page_fetches_relative_urls_only(client):
    """Behind a reverse proxy under a path prefix, a URL starting with '/' would leave the prefix."""
    import re

    page = client.get("/").text
    # the URL is api()'s and fetch()'s first argument, latest()'s second (after the channel's name)
    calls = re.findall(r"""\b(?:api|fetch)\(\s*(["'`])(.*?)\1""", page) + \
        re.findall(r"""\blatest\(\s*"\w+",\s*(["'`])(.*?)\1""", page)
    assert {"api/info", "api/concepts", "recommend", "api/users/random"} <= {url for _, url in calls}, calls
    assert len(calls) == 9, calls
    assert [url for _, url in calls if url.startswith("/") or "://" in url] == []
    assert not re.search(r"""(?:href|src|action)=["']/""", page)


def test_heldout_ranks_the_last_item_as_the_evaluator_does(client):
    """For every user: the held-out rank gives the evaluator's per-query NDCG@30 (all 30 items ranked) on the
    loo test set, so the route ranks exactly as `sinerec.evaluate` does."""
    from sinerec.data.splits import make_split
    from sinerec.evaluate import EvalConfig, evaluate
    from sinerec.explorer import held_out

    run = client.app.state.recommender.run
    split = make_split(run.data, run.config.protocol)
    result = evaluate(run.model, run.data, split.test, run.config.data.max_len, exclude_history=True,
                      config=EvalConfig(ks=(30,), metrics=("NDCG",)))
    for q, u in enumerate(result.users):
        h = held_out(run, int(u), 30, exclude_history=True)
        expected = 0.0 if h.rank is None else 1 / np.log2(h.rank + 1)
        assert np.isclose(result.per_query["NDCG@30"][q], expected, rtol=0, atol=1e-12), (u, h.rank)
        assert h.target == split.test.targets[q] and list(h.history) == list(run.data.sequence(int(u))[:-1])
    assert len(result.users) == 50


def test_heldout_route_matches_recommend_on_the_history_before_the_test_point(client):
    sequence = client.get("/api/users/7").json()["history"]
    for exclude in (True, False):
        got = client.get("/api/users/7/heldout", params={"k": 5, "exclude_history": exclude}).json()
        assert got["user_id"] == 7 and got["length"] == 12 and got["k"] == 5 and got["exclude_history"] is exclude
        assert got["history"] == sequence[:-1]
        ids = [x["item_id"] for x in sequence[:-1]]
        rec = client.post("/recommend", json={"history": ids, "k": 5, "exclude_seen": exclude}).json()
        assert [(x["item_id"], x["interest"], x["concept"]) for x in got["items"]] == \
            [(x["item_id"], x["interest"], x["concept"]) for x in rec["items"]]
        assert np.allclose([x["score"] for x in got["items"]], [x["score"] for x in rec["items"]], atol=1e-5)
        target = got["target"]
        assert target["item_id"] == sequence[-1]["item_id"] and target["title"] == sequence[-1]["title"]
        assert got["num_ranked"] == 30 - (len(set(ids)) if exclude else 0)
        if target["rank"] is None:  # the true next item is also in the history, and the history is excluded
            assert exclude and target["item_id"] in ids
            continue
        listed = [x["item_id"] for x in got["items"]]
        assert target["in_top_k"] is (target["rank"] <= 5)
        assert (target["item_id"] in listed) is target["in_top_k"]
        if target["in_top_k"]:
            assert listed.index(target["item_id"]) + 1 == target["rank"]
            assert got["items"][target["rank"] - 1]["interest"] == target["interest"]
        assert target["interest"] in (0, 1) and target["concept"] in range(5)
    default = client.get("/api/users/7/heldout", params={"k": 5}).json()
    assert default["exclude_history"] is True  # the run's protocol (loo) excludes the history


def test_heldout_rank_outside_the_top_k_is_the_full_ranking_position(client):
    """With k = 1 most targets fall outside the list; their rank is their place in the k = 30 list."""
    outside = 0
    for user in range(50):
        short = client.get(f"/api/users/{user}/heldout", params={"k": 1, "exclude_history": False}).json()
        full = client.get(f"/api/users/{user}/heldout", params={"k": 30, "exclude_history": False}).json()
        ranking = [x["item_id"] for x in full["items"]]
        assert len(ranking) == 30 and short["target"]["rank"] == ranking.index(short["target"]["item_id"]) + 1
        assert short["target"]["in_top_k"] is (short["target"]["rank"] == 1)
        outside += not short["target"]["in_top_k"]
    assert outside > 0


def test_heldout_errors(client):
    assert client.get("/api/users/nobody/heldout").status_code == 404
    for k in (0, 31):
        bad = client.get("/api/users/7/heldout", params={"k": k})
        assert bad.status_code == 422 and bad.json()["detail"] == f"k: must be between 1 and 30, got {k}"


def test_multi_interest_baselines_report_their_interests(tmp_path):
    """ComiRec: /api/info gives K so that the page groups by interest; every listed item and the held-out
    target carry the interest that scores them highest (argmax over the K vectors)."""
    from fastapi.testclient import TestClient

    from sinerec.serve import create_app

    run = _run(tmp_path / "comirec", ["model=comirec-sa", "model_params.dim=8", "model_params.num_interests=3"])
    client = TestClient(create_app(run))
    info = client.get("/api/info").json()
    assert info["num_interests"] == 3 and info["has_concepts"] is False and info["num_concepts"] is None
    got = client.get("/api/users/3/heldout", params={"k": 30, "exclude_history": False}).json()
    assert {x["interest"] for x in got["items"]} <= {0, 1, 2} and got["target"]["interest"] in (0, 1, 2)
    assert all(x["concept"] is None for x in got["items"])
    target = got["items"][got["target"]["rank"] - 1]
    assert target["item_id"] == got["target"]["item_id"] and target["interest"] == got["target"]["interest"]
