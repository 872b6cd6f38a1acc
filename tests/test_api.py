"""The Python API (sinerec.fit / load / Run): data in three shapes, the one training job, batched top-k,
eval mode, and the sinerec logger."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import sinerec
from sinerec.api import frame_interactions
from sinerec.errors import ConfigError, SinerecError
from sinerec.recommend import Recommender, RequestError

QUICK = {"epochs": 1, "max_steps_per_epoch": 5, "threads": 1, "progress": False}


def events(n_users: int = 60, n_items: int = 40, per_user: int = 12, seed: int = 0) -> pd.DataFrame:
    """A log with text user ids, integer item ids and increasing timestamps, in shuffled row order."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", int(rng.integers(1, n_items + 1)), 1000 * u + t) for u in range(n_users) for t in range(per_user)]
    frame = pd.DataFrame(rows, columns=["uid", "iid", "when"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _fit(tmp: Path, model: str, **extra):
    return sinerec.fit(events(), model=model, columns={"user": "uid", "item": "iid", "timestamp": "when"},
                       out=tmp / model, **QUICK, **extra)


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    threads = torch.get_num_threads()
    try:
        return _fit(tmp_path_factory.mktemp("api"), "sine", model_params={"num_concepts": 8})
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def comirec_run(tmp_path_factory):
    threads = torch.get_num_threads()
    try:
        return _fit(tmp_path_factory.mktemp("api"), "comirec-sa")
    finally:
        torch.set_num_threads(threads)


def test_fit_from_a_dataframe_writes_a_run_that_load_reads_back_identically(sine_run):
    run = sine_run
    assert isinstance(run, sinerec.Run) and not run.model.training
    assert run.config.model == "sine" and run.config.model_params.num_concepts == 8
    assert run.config.train.epochs == 1 and run.config.train.max_steps_per_epoch == 5
    assert run.data.name == "dataframe" and run.data.num_users == 60
    assert set(run.metrics["test"]) >= {"HR@10", "NDCG@10"}
    again = sinerec.load(run.run_dir)
    assert again.metrics == run.metrics and not again.model.training
    history = [run.data.item_ids[i] for i in run.data.sequence(3)]
    first = [(i.item_id, round(i.score, 5)) for i in run.recommend(history, k=5).items]
    assert first == [(i.item_id, round(i.score, 5)) for i in again.recommend(history, k=5).items]
    assert len(first) == 5 and not set(x for x, _ in first) & set(history)


def test_fit_settings_start_from_the_shipped_file(tmp_path):
    run = sinerec.fit(events(), model="sasrec", columns={"user": "uid", "item": "iid"}, out=tmp_path / "r",
                      **QUICK, settings={"train": {"lr": 0.01}})
    assert run.config.model_params.dim == 50  # configs/sasrec.toml
    assert run.config.train.lr == 0.01 and run.config.train.batch_size == 128


def test_recommend_users_is_the_batched_top_k_with_history_excluded(sine_run):
    run = sine_run
    users = ["u5", "u0", "u17"]
    frame = run.recommend_users(users, k=4, batch_size=2)
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score", "interest"]
    assert frame["user_id"].tolist() == [u for u in users for _ in range(4)]
    assert frame["rank"].tolist() == [1, 2, 3, 4] * 3
    for user in users:
        u = list(run.data.user_ids).index(user)
        history = [run.data.item_ids[i] for i in run.data.sequence(u)]
        mine = frame[frame["user_id"] == user]
        single = run.recommend(history, k=4).items
        assert mine["item_id"].tolist() == [i.item_id for i in single]
        assert np.allclose(mine["score"].to_numpy(), [i.score for i in single], atol=1e-5)
        assert mine["interest"].tolist() == [i.interest for i in single]
        assert not set(mine["item_id"]) & set(history)
    everyone = run.recommend_users(k=2)
    assert len(everyone) == 2 * run.data.num_users


def test_recommend_users_of_a_multi_interest_model_names_the_interest(comirec_run):
    frame = comirec_run.recommend_users(["u1"], k=6)
    k = comirec_run.config.model_params.num_interests
    assert frame["interest"].between(0, k - 1).all() and len(frame) == 6


def test_recommend_users_errors(sine_run):
    with pytest.raises(RequestError, match=r"users: 2 unknown user id\(s\): 'nobody', 'u999'"):
        sine_run.recommend_users(["u1", "nobody", "u999"])
    with pytest.raises(RequestError, match="k: must be an integer >= 1, got 0"):
        sine_run.recommend_users(["u1"], k=0)


def test_a_recommender_serves_in_eval_mode(sine_run):
    loaded = sine_run.loaded
    loaded.model.train()  # as a model fresh from training is
    Recommender(loaded)
    assert not loaded.model.training


def test_fit_from_a_file_and_from_a_dataset_name(tmp_path):
    path = tmp_path / "log.csv"
    events().to_csv(path, index=False)
    run = sinerec.fit(path, model="mostpop", format="table", columns={"user": "uid", "item": "iid",
                                                                      "timestamp": "when"}, out=tmp_path / "f", **QUICK)
    assert run.config.data.path == str(path) and run.data.name == "log" and run.data.num_users == 60
    named = sinerec.fit("ml-latest-small", model="mostpop", out=tmp_path / "n", **QUICK)
    assert named.data.name == "ml-latest-small" and named.data.num_users == 610


def test_fit_refuses_unknown_settings(tmp_path):
    with pytest.raises(ConfigError, match="fit: unknown setting learning_rate=0.1"):
        sinerec.fit(events(), columns={"user": "uid", "item": "iid"}, learning_rate=0.1)


def test_frame_interactions_maps_columns_and_converts_datetimes():
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item": ["a", "b", "a"],
                          "timestamp": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-01 00:01:00",
                                                       "1970-01-02 00:00:00"])})
    log = frame_interactions(frame)
    assert log.events["user"].tolist() == [1, 1, 2] and log.events["item"].tolist() == ["a", "b", "a"]
    assert log.events["timestamp"].tolist() == [10, 60, 86400]
    with pytest.raises(SinerecError, match=r"no item column 'movie'; the DataFrame has user_id, item, timestamp"):
        frame_interactions(frame, {"item": "movie"})
    with pytest.raises(ConfigError, match="columns: unknown role 'rating'"):
        frame_interactions(frame, {"rating": "r"})


def test_progress_goes_to_the_sinerec_logger(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sinerec"):
        sinerec.fit(events(), model="sasrec", columns={"user": "uid", "item": "iid"}, out=tmp_path / "a", **QUICK)
    epochs = [r for r in caplog.records if r.name == "sinerec" and "epoch   1" in r.getMessage()]
    assert len(epochs) == 1 and epochs[0].levelno == logging.INFO
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sinerec"):  # a user silences it
        sinerec.fit(events(), model="sasrec", columns={"user": "uid", "item": "iid"}, out=tmp_path / "b", **QUICK)
    assert not [r for r in caplog.records if r.name == "sinerec"]


def test_import_sinerec_is_cheap():
    import subprocess
    import sys

    code = "import sys, sinerec; print('torch' in sys.modules, 'sinerec.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_polars_like_frame_is_read_through_to_pandas():
    class PolarsLike:  # polars.DataFrame offers to_pandas(); polars itself is not a dependency
        def to_pandas(self) -> pd.DataFrame:
            return pd.DataFrame({"user": ["a", "a"], "item": [3, 4]})

    log = frame_interactions(PolarsLike())
    assert log.events["user"].tolist() == ["a", "a"] and "timestamp" not in log.events
    with pytest.raises(SinerecError, match="data: expected a dataset name, a file path or a DataFrame, got list"):
        frame_interactions([1, 2])
