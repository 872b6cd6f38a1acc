"""A run trained from a prepared dataset references it instead of copying its sequences (``sinerec.run_data``):
loading maps the artifact, a moved or changed artifact is refused with the fix, ``sinerec run-data`` relinks
or copies the sequences in, and export, explain, recommend and serve work on such a run."""

import json
import shutil

import numpy as np
import pytest

from sinerec import run_data, runs
from sinerec.cli import main
from sinerec.data.prepared import read_summary
from sinerec.data.synthetic import planted_concepts

TINY = ["data.max_len=6", "train.batch_size=64", "train.progress=false", "train.epochs=1", "train.threads=1",
        "model_params.dim=8", "model_params.num_concepts=4", "model_params.num_interests=2"]


def write_log(path, seed):
    events = planted_concepts(n_users=40, n_items=24, n_concepts=3, length=9, seed=seed).events
    events.rename(columns={"user": "user_id", "item": "item_id"}).to_csv(path, index=False)


def prepare_into(csv_file, out):
    assert main(["data", "prepare", "--path", str(csv_file), "--format", "table", "--set", "data.min_item_count=2",
                 "--protocol", "loo", "--out", str(out)]) == 0


@pytest.fixture
def trained(tmp_path, capsys):
    """(prepared folder, run directory of `sinerec train --prepared`, run of the same source file)."""
    csv_file = tmp_path / "log.csv"
    write_log(csv_file, seed=3)
    prep = tmp_path / "prep"
    prepare_into(csv_file, prep)
    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["train", "--model", "sine", "--prepared", str(prep), *sets, "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert main(["train", "--model", "sine", "--path", str(csv_file), "--format", "table", "--set",
                 "data.min_item_count=2", *sets, "--out", str(tmp_path / "source"), "--quiet"]) == 0
    capsys.readouterr()
    return prep, tmp_path / "run", tmp_path / "source"


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip()


def test_a_prepared_run_holds_no_copy_of_the_sequences_and_maps_them(trained):
    prep, run, source = trained
    assert not (run / runs.SEQUENCES).exists() and (source / runs.SEQUENCES).exists()
    info = runs.read_json(run / runs.DATA_INFO)
    assert info["prepared"] == {"path": str(prep), "fingerprint": read_summary(prep)["fingerprint"]}
    loaded = runs.load_run(run)
    assert isinstance(loaded.data.items, np.memmap) and isinstance(loaded.data.offsets, np.memmap)
    assert loaded.data.items.filename == prep / "items.npy"
    own = runs.load_data(source)  # the source run's own copy: the same data, in memory
    assert not isinstance(own.items, np.memmap)
    np.testing.assert_array_equal(loaded.data.items, own.items)
    np.testing.assert_array_equal(loaded.data.offsets, own.offsets)
    assert list(loaded.data.item_ids) == list(own.item_ids) and list(loaded.data.user_ids) == list(own.user_ids)
    assert loaded.data.fingerprint() == own.fingerprint()


def test_export_explain_and_recommend_work_on_a_prepared_run(trained, tmp_path, capsys):
    prep, run, source = trained
    for r in (run, source):
        assert main(["export", "--run", str(r), "--out", str(tmp_path / f"export-{r.name}")]) == 0
    with np.load(tmp_path / "export-run" / "users.npz") as a, np.load(tmp_path / "export-source" / "users.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    user = str(runs.load_data(run).user_ids[0])
    capsys.readouterr()
    assert main(["recommend", "--run", str(run), "--user", user, "--k", "3", "--json"]) == 0
    mine = json.loads(capsys.readouterr().out)
    assert main(["recommend", "--run", str(source), "--user", user, "--k", "3", "--json"]) == 0
    assert mine == json.loads(capsys.readouterr().out)
    assert main(["explain", "--run", str(run), "--out", str(tmp_path / "explain"), "--repeats", "2"]) == 0
    assert (tmp_path / "explain" / "report.html").exists()


def test_serving_a_prepared_run_answers_as_the_source_run(trained):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from sinerec.serve import create_app

    _, run, source = trained
    replies = []
    for r in (run, source):
        loaded = runs.load_run(r)
        history = [str(i) for i in loaded.data.item_ids[loaded.data.sequence(0)]]
        with TestClient(create_app(loaded)) as client:
            reply = client.post("/recommend", json={"history": history, "k": 3})
            assert reply.status_code == 200, reply.text
            replies.append(reply.json())
    assert replies[0] == replies[1] and len(replies[0]["items"]) == 3


def test_a_moved_artifact_is_refused_with_the_fix_and_relinking_repairs_the_run(trained, tmp_path, capsys):
    prep, run, _ = trained
    moved = tmp_path / "moved"
    prep.rename(moved)
    fingerprint = read_summary(moved)["fingerprint"]
    expected = (f"{run}: trained on the prepared dataset {prep} (fingerprint {fingerprint}), which is missing; "
                f"restore it, or point the run at it with `sinerec run-data {run} --prepared DIR` (add --copy to "
                "store the sequences in the run)")
    for argv in (["export", "--run", str(run)], ["recommend", "--run", str(run), "--history", "1"],
                 ["explain", "--run", str(run)], ["run-data", str(run)],
                 ["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]):
        assert one_line_error(capsys, argv) == f"sinerec: error: {expected}", argv
    assert main(["run-data", str(run), "--prepared", str(moved)]) == 0
    assert f"now references {moved}" in capsys.readouterr().out
    assert runs.read_json(run / runs.DATA_INFO)["prepared"] == {"path": str(moved), "fingerprint": fingerprint}
    assert runs.read_json(run / runs.CONFIG)["data"]["prepared"] == str(moved)
    assert runs.load_run(run).data.items.filename == moved / "items.npy"
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0  # resumes from there
    assert runs.read_json(run / runs.METRICS)["train"]["epochs"] == 2 and not (run / runs.SEQUENCES).exists()


def test_a_changed_artifact_is_refused_by_its_fingerprint(trained, tmp_path, capsys):
    prep, run, _ = trained
    before = read_summary(prep)["fingerprint"]
    write_log(tmp_path / "other.csv", seed=4)
    prepare_into(tmp_path / "other.csv", prep)  # prepared again, other data, same place
    after = read_summary(prep)["fingerprint"]
    assert after != before
    err = one_line_error(capsys, ["export", "--run", str(run)])
    assert err == (f"sinerec: error: {run}: trained on the prepared dataset {prep} with fingerprint {before}, but that "
                   f"folder now holds fingerprint {after} (prepared again from other data?); restore it, or point "
                   f"the run at it with `sinerec run-data {run} --prepared DIR` (add --copy to store the "
                   "sequences in the run)")
    err = one_line_error(capsys, ["run-data", str(run), "--prepared", str(prep)])  # relinking cannot bless it
    assert f"but that folder now holds fingerprint {after}" in err


def test_altered_arrays_under_the_same_summary_are_refused(trained, capsys):
    prep, run, _ = trained
    items = np.load(prep / "items.npy")
    items[[0, 1]] = items[[1, 0]]
    np.save(prep / "items.npy", items)
    err = one_line_error(capsys, ["export", "--run", str(run)])
    assert f"{run}: its prepared dataset cannot be read ({prep}: the arrays give dataset fingerprint" in err
    assert "damaged or altered" in err


def test_copying_the_sequences_in_makes_the_run_self_contained(trained, tmp_path, capsys):
    prep, run, source = trained
    assert main(["run-data", str(run)]) == 0
    assert f"maps the prepared dataset {prep}" in capsys.readouterr().out
    assert main(["run-data", str(run), "--copy"]) == 0
    assert (run / runs.SEQUENCES).exists()
    shutil.rmtree(prep)
    data = runs.load_data(run)
    assert not isinstance(data.items, np.memmap)
    assert data.fingerprint() == runs.load_data(source).fingerprint()
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "e")]) == 0
    err = one_line_error(capsys, ["run-data", str(source), "--copy"])
    assert err == f"sinerec: error: {source}: trained from a source file: its sequences are already in the run"


def test_the_run_records_an_absolute_path(tmp_path, monkeypatch, capsys):
    write_log(tmp_path / "log.csv", seed=3)
    prepare_into(tmp_path / "log.csv", tmp_path / "prep")
    monkeypatch.chdir(tmp_path)
    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["train", "--model", "sine", "--prepared", "prep", *sets, "--out", "run", "--quiet"]) == 0
    assert run_data.prepared_reference(tmp_path / "run")["path"] == str(tmp_path / "prep")
    monkeypatch.chdir("/")
    assert runs.load_run(tmp_path / "run").data.items.filename == tmp_path / "prep" / "items.npy"
