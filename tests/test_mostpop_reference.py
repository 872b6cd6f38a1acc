"""MostPop on ML-1M through the whole pipeline agrees with an independent implementation of `loo`."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset

from sinerec.cli import main


def independent_mostpop_loo(ratings_path):
    """Written from the protocol text alone: plain pandas, no sinerec code."""
    df = pd.read_csv(ratings_path, sep="::", engine="python", names=["u", "i", "r", "t"])
    df["row"] = np.arange(len(df))
    df = df.sort_values(["u", "t", "row"], kind="stable")
    seqs = df.groupby("u")["i"].apply(list)
    train_counts = pd.Series([i for s in seqs for i in s[:-2]]).value_counts()
    items = np.sort(df["i"].unique())
    pop = train_counts.reindex(items, fill_value=0).to_numpy()
    # popularity descending, ties to the smaller id
    order = items[np.lexsort((items, -pop))]
    out = {"HR@10": [], "HR@50": [], "NDCG@10": [], "NDCG@50": []}
    for s in seqs:
        seen = set(s[:-1])
        ranked = [i for i in order if i not in seen]
        target = s[-1]
        rank = ranked.index(target) + 1 if target in ranked else 10**9
        for k in (10, 50):
            out[f"HR@{k}"].append(float(rank <= k))
            out[f"NDCG@{k}"].append(1 / np.log2(rank + 1) if rank <= k else 0.0)
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.slow
@pytest.mark.realdata
def test_mostpop_ml1m_matches_independent_reference(tmp_path, capsys):
    folder = shared_dataset("ml-1m")
    rc = main(["train", "--model", "mostpop", "--dataset", "ml-1m", "--data-dir", str(folder),
               "--protocol", "loo", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert got["dataset"]["n_users"] == 6040 and got["dataset"]["n_interactions"] == 1000209
    assert got["dataset"]["fingerprint"] == "76391c375ab61be6"
    assert got["protocol"]["fingerprint"] == "9d34043ce927a315"
    ref = independent_mostpop_loo(folder / "ratings.dat")
    # the same ranks on the same split: equal up to the order of the float summation (HR exactly)
    for key, value in ref.items():
        assert got["test"][key] == pytest.approx(value, rel=1e-12, abs=0), (key, got["test"][key], value)
        if key.startswith("HR"):
            assert round(got["test"][key] * 6040) == round(value * 6040)
