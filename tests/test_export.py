"""`sinerec export`: item and user tables keyed by the original ids, in both formats, equal to the model."""

import json

import numpy as np
import pytest
import torch

from sinerec.cli import main
from sinerec.config import load_config
from sinerec.data.batching import gather_histories
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import make_split
from sinerec.data.synthetic import planted_concepts
from sinerec.export import read_table
from sinerec.pipeline import Prepared, load_run, write_run_header
from sinerec.train import Trainer

MAX_LEN, K, D = 6, 3, 12


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("export") / "run"
    config = load_config(overrides=[
        f"data.max_len={MAX_LEN}", "train.batch_size=128", "train.progress=false", "train.epochs=1",
        "train.threads=1", f"model_params.dim={D}", "model_params.num_concepts=7", f"model_params.num_interests={K}"])
    log = planted_concepts(n_users=41, n_items=30, n_concepts=5, length=9, seed=2)
    log.events["item"] = log.events["item"] * 3 + 50  # original ids unlike the indices
    log.items.index = log.items.index * 3 + 50
    data = preprocess(log)
    split = make_split(data, config.protocol)
    write_run_header(run_dir, config, Prepared(data, split, 0.0))
    threads = torch.get_num_threads()
    try:
        Trainer(config, data, split, run_dir=run_dir, log=lambda *a: None).fit()
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.mark.parametrize("fmt", ["npz", "parquet"])
def test_export_tables_match_the_model(run_dir, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (pip install 'sinerec[parquet]')")
    out = tmp_path / "export"
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--format", fmt, "--batch-size", "16"]) == 0
    manifest = json.loads((out / "export.json").read_text())
    assert (manifest["num_items"], manifest["num_users"], manifest["dim"], manifest["num_interests"]) == (30, 41, D, K)
    items, users = read_table(out / f"items.{fmt}"), read_table(out / f"users.{fmt}")
    run = load_run(run_dir)
    assert items["item_id"].tolist() == [i * 3 + 50 for i in range(1, 31)]
    np.testing.assert_array_equal(items["vector"], run.model.item_embeddings()[1:].detach().numpy())
    assert users["user_id"].tolist() == run.data.user_ids.tolist()
    d = run.data
    history = torch.from_numpy(gather_histories(d.items, d.offsets[:-1], d.offsets[1:], MAX_LEN))
    with torch.no_grad():
        model_out = run.model(history)
    assert users["interests"].shape == (41, K, D) and users["concept_ids"].dtype == np.int64
    np.testing.assert_allclose(users["vector"], model_out.user.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(users["interests"], model_out.interests.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(users["concept_ids"], model_out.extras["concept_ids"].numpy())
    np.testing.assert_allclose(users["aggregation"].sum(1), 1.0, atol=1e-5)
