"""`sinerec export`: item and user tables keyed by the original ids, in both formats, equal to the model."""

import json

import numpy as np
import pytest
import torch
from conftest import train_run

from sinerec.cli import main
from sinerec.data.batching import gather_histories
from sinerec.data.synthetic import planted_concepts
from sinerec.export import read_table
from sinerec.runs import load_run

MAX_LEN, K, D = 6, 3, 12


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    log = planted_concepts(n_users=41, n_items=30, n_concepts=5, length=9, seed=2)
    log.events["item"] = log.events["item"] * 3 + 50  # original ids unlike the indices
    log.items.index = log.items.index * 3 + 50
    return train_run(tmp_path_factory.mktemp("export") / "run",
                     [f"data.max_len={MAX_LEN}", f"model_params.dim={D}", "model_params.num_concepts=7",
                      f"model_params.num_interests={K}"], log)


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


# --- models other than SINE: the same tables, without SINE's concept columns ------------------------------

OTHER_MODELS = {"comirec-sa": ["model_params.dim=10", "model_params.num_interests=3"],
                "gru4rec": ["model_params.dim=10"]}


@pytest.mark.parametrize("name", list(OTHER_MODELS))
def test_export_of_non_sine_models(tmp_path, name):
    log = planted_concepts(n_users=23, n_items=18, n_concepts=3, length=7, seed=4)
    log.events["item"] = log.events["item"] * 3 + 50
    log.items.index = log.items.index * 3 + 50
    run_dir = train_run(tmp_path / "run", [f"model={name}", f"data.max_len={MAX_LEN}", *OTHER_MODELS[name]], log)
    out = tmp_path / "export"
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--batch-size", "5"]) == 0
    manifest = json.loads((out / "export.json").read_text())
    items, users = read_table(out / "items.npz"), read_table(out / "users.npz")
    run = load_run(run_dir)
    assert manifest["model"] == name and (manifest["num_items"], manifest["num_users"], manifest["dim"]) == (18, 23, 10)
    assert items["item_id"].tolist() == [i * 3 + 50 for i in range(1, 19)]
    np.testing.assert_array_equal(items["vector"], run.model.item_embeddings()[1:].detach().numpy())
    d = run.data
    history = torch.from_numpy(gather_histories(d.items, d.offsets[:-1], d.offsets[1:], MAX_LEN))
    with torch.no_grad():
        model_out = run.model.eval()(history)
    assert users["user_id"].tolist() == d.user_ids.tolist()
    np.testing.assert_allclose(users["vector"], model_out.user.numpy(), rtol=1e-5, atol=1e-6)
    assert not {"concept_ids", "gates", "aggregation"} & set(users)  # SINE only
    if name == "comirec-sa":
        assert manifest["num_interests"] == 3 and users["interests"].shape == (23, 3, 10)
        np.testing.assert_allclose(users["interests"], model_out.interests.numpy(), rtol=1e-5, atol=1e-6)
    else:
        assert manifest["num_interests"] is None and "interests" not in users


def test_a_streamed_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    """Export streams its tables into the file (storage.atomic_write_stream): a failure after part of the
    content was written keeps the earlier file as it was and removes the partial one."""
    from sinerec import storage

    target = tmp_path / "users.npz"
    storage.atomic_write_stream(target, lambda fh: fh.write(b"old content"))

    def half_then_fail(fh):
        fh.write(b"new, partial")
        raise MemoryError("out of memory halfway")

    with pytest.raises(MemoryError):
        storage.atomic_write_stream(target, half_then_fail)
    assert target.read_bytes() == b"old content"
    assert not list(tmp_path.glob(storage.TEMPORARY_GLOB))
