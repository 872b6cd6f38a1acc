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
    assert page.status_code == 200 and "sinerec explorer" in page.text and "/recommend" in page.text
    info = client.get("/api/info").json()
    assert info == {"model": "sine", "dataset": "synthetic-concepts", "num_items": 30, "num_users": 50,
                    "max_len": 10, "num_interests": 2, "num_concepts": 5, "has_titles": True,
                    "has_categories": True, "has_concepts": True}


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
    assert client.get("/api/info").json()["has_concepts"] is False
    response = client.get("/api/concepts")
    assert response.status_code == 404 and "SINE only" in response.json()["detail"]
