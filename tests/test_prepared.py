"""Prepared datasets (``sinerec data prepare``, ``--prepared DIR``): the artifact, its memory mapping, the runs
that use it, refusal of the wrong one, the atomic write and the command line's errors."""

import json
import os

import numpy as np
import pytest

from sinerec import runs
from sinerec.cli import main
from sinerec.config import load_config
from sinerec.data.prepared import load_sequences, load_split, read_summary, write_prepared
from sinerec.data.synthetic import planted_concepts
from sinerec.errors import DataError, SinerecError
from sinerec.pipeline import prepare, prepared_overrides

TINY = ["data.max_len=6", "train.batch_size=64", "train.progress=false", "train.epochs=2", "train.threads=1",
        "model_params.dim=8", "model_params.num_concepts=4", "model_params.num_interests=2"]


@pytest.fixture
def csv_file(tmp_path):
    events = planted_concepts(n_users=40, n_items=24, n_concepts=3, length=9, seed=3).events
    path = tmp_path / "log.csv"
    events.rename(columns={"user": "user_id", "item": "item_id"}).to_csv(path, index=False)
    return path


def source(csv_file, *more):
    return ["--path", str(csv_file), "--format", "table", *more]


@pytest.fixture
def prepared_dir(tmp_path, csv_file, capsys):
    out = tmp_path / "prep"
    assert main(["data", "prepare", *source(csv_file), "--set", "data.min_item_count=2", "--protocol", "loo",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def source_config(csv_file, *more):
    return load_config(overrides=[f"data.path={json.dumps(str(csv_file))}", 'data.format="table"',
                                  "data.min_item_count=2", *more])


def test_prepare_writes_memory_mapped_arrays_equal_to_preparing_the_source(prepared_dir, csv_file):
    assert np.load(prepared_dir / "items.npy", mmap_mode="r").__class__ is np.memmap
    mapped = prepare(load_config(overrides=prepared_overrides(str(prepared_dir))))
    direct = prepare(source_config(csv_file))
    for array in (mapped.data.items, mapped.data.offsets, mapped.data.timestamps, mapped.split.train.positions,
                  mapped.split.test.targets):
        assert isinstance(array, np.memmap) and not array.flags.writeable
    # the one array that becomes a tensor (sampler popularity) is loaded writeable: torch warns on read-only ones
    assert not isinstance(mapped.split.train.item_counts, np.memmap) and mapped.split.train.item_counts.flags.writeable
    assert mapped.data.fingerprint() == direct.data.fingerprint() == read_summary(prepared_dir)["fingerprint"]
    assert mapped.split.fingerprint == direct.split.fingerprint
    np.testing.assert_array_equal(mapped.data.items, direct.data.items)
    np.testing.assert_array_equal(mapped.data.timestamps, direct.data.timestamps)
    assert list(mapped.data.item_ids) == list(direct.data.item_ids)
    assert list(mapped.data.user_ids) == list(direct.data.user_ids)
    for part in ("train", "valid", "test"):
        for key, value in vars(getattr(direct.split, part)).items():
            np.testing.assert_array_equal(getattr(getattr(mapped.split, part), key), value, err_msg=f"{part}.{key}")
    assert mapped.folder == str(prepared_dir) and direct.folder is None


def test_a_split_of_another_protocol_is_made_not_loaded(prepared_dir):
    assert load_split(prepared_dir, load_config(overrides=['protocol.name="comirec"']).protocol) is None
    config = load_config(overrides=[*prepared_overrides(str(prepared_dir)), 'protocol.name="comirec"'])
    split = prepare(config).split
    assert split.protocol.name == "comirec" and not isinstance(split.train.positions, np.memmap)


def test_train_from_prepared_gives_the_same_data_split_and_metrics_as_from_the_source(prepared_dir, csv_file,
                                                                                       tmp_path, capsys):
    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["train", "--prepared", str(prepared_dir), *sets, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["train", *source(csv_file), *sets, "--set", "data.min_item_count=2", "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    capsys.readouterr()
    a, b = (runs.read_json(tmp_path / run / runs.METRICS) for run in ("a", "b"))
    assert a["dataset"] == b["dataset"] and a["protocol"] == b["protocol"]
    assert a["valid"] == b["valid"] and a["test"] == b["test"]
    info = runs.read_json(tmp_path / "a" / runs.DATA_INFO)
    assert info["prepared"] == {"path": str(prepared_dir), "fingerprint": read_summary(prepared_dir)["fingerprint"]}
    assert "prepared" not in runs.read_json(tmp_path / "b" / runs.DATA_INFO)
    assert runs.read_json(tmp_path / "a" / runs.CONFIG)["data"]["prepared"] == str(prepared_dir)


def test_benchmark_runs_map_the_prepared_dataset(prepared_dir, tmp_path, capsys):
    assert main(["benchmark", "--prepared", str(prepared_dir), "--models", "mostpop", "--seeds", "0", "--quick",
                 "--out", str(tmp_path / "bench")]) == 0
    capsys.readouterr()
    [record] = [runs.read_json(p) for p in (tmp_path / "bench").rglob("metrics.json")]
    assert record["dataset"]["fingerprint"] == read_summary(prepared_dir)["fingerprint"]
    [info] = [runs.read_json(p) for p in (tmp_path / "bench" / "runs").rglob(runs.DATA_INFO)]
    assert info["prepared"] == {"path": str(prepared_dir), "fingerprint": read_summary(prepared_dir)["fingerprint"]}


def test_a_prepared_dataset_made_with_other_settings_is_refused(prepared_dir):
    config = load_config(overrides=[*prepared_overrides(str(prepared_dir)), "data.min_item_count=3"])
    with pytest.raises(DataError, match=r"prep: prepared with other data settings than this run's "
                                        r"\(data.min_item_count: prepared 2, this run 3\)"):
        prepare(config)


def test_altered_arrays_are_refused_by_their_fingerprint(prepared_dir):
    items = np.load(prepared_dir / "items.npy")
    items[[0, 1]] = items[[1, 0]]
    np.save(prepared_dir / "items.npy", items)
    with pytest.raises(DataError, match=r"items\.npy|the arrays give dataset fingerprint .* the summary says"):
        load_sequences(prepared_dir)


def test_resume_on_a_prepared_dataset_replaced_by_other_data_is_refused(prepared_dir, csv_file, tmp_path, capsys):
    sets = [x for s in [*TINY, "train.epochs=1"] for x in ("--set", s)]
    assert main(["train", "--prepared", str(prepared_dir), *sets, "--out", str(tmp_path / "r"), "--quiet"]) == 0
    other = planted_concepts(n_users=40, n_items=24, n_concepts=3, length=9, seed=4).events
    other.rename(columns={"user": "user_id", "item": "item_id"}).to_csv(csv_file, index=False)  # other data
    assert main(["data", "prepare", *source(csv_file), "--set", "data.min_item_count=2", "--protocol", "loo",
                 "--out", str(prepared_dir)]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--resume: {tmp_path / 'r'} was trained on other data" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("fail_at", ["items.npy", "timestamps.npy", "items.parquet", "split", "summary.json"])
def test_an_interrupted_prepare_leaves_the_old_artifact_or_none(prepared_dir, tmp_path, fail_at):
    config = load_config(overrides=prepared_overrides(str(prepared_dir)))
    old = prepare(config)
    before = {name: (prepared_dir / name).read_bytes() for name in os.listdir(prepared_dir) if name != "split"}

    def hook(name):
        if name == fail_at:
            raise OSError(28, "No space left on device")

    for out in (tmp_path / "fresh", prepared_dir):
        with pytest.raises(OSError, match="No space left"):
            write_prepared(out, old.data, read_summary(prepared_dir)["data"], old.split, hook=hook)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "prep"]  # no temporary left
    assert {name: (prepared_dir / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("argv,message", [
    (["train", "--prepared", "PREP", "--dataset", "ml-1m"],
     "--prepared PREP: the data settings are the prepared dataset's; --dataset conflicts with it"),
    (["train", "--prepared", "PREP", "--set", "data.min_user_count=3"],
     "--prepared PREP: the data settings are the prepared dataset's; data.min_user_count=3 conflicts with it"),
    (["benchmark", "--prepared", "PREP", "--path", "x.csv"],
     "--prepared PREP: the data settings are the prepared dataset's; --path conflicts with it"),
    (["train", "--prepared", "MISSING"], "MISSING: not a prepared dataset (no summary.json"),
    (["data", "prepare", "--dataset", "ml-1m", "--set", "train.lr=1", "--out", "o"],
     "data prepare: --set takes data.* and protocol.* settings (not data.prepared), got 'train.lr=1'"),
    (["data", "prepare", "--path", "LOG", "--format", "table", "--out", "OTHER"],
     "OTHER: exists and is not a prepared dataset; refusing to replace it"),
])
def test_command_line_errors_are_one_line_naming_the_flag(argv, message, prepared_dir, csv_file, tmp_path, capsys):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    names = {"PREP": str(prepared_dir), "MISSING": str(tmp_path / "missing"), "LOG": str(csv_file),
             "OTHER": str(tmp_path / "other")}
    argv = [names.get(a, a) for a in argv]
    message = message.replace("PREP", str(prepared_dir)).replace("MISSING", str(tmp_path / "missing"))
    message = message.replace("OTHER", str(tmp_path / "other"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_the_summary_records_settings_counts_and_the_split(prepared_dir, csv_file):
    summary = read_summary(prepared_dir)
    direct = prepare(source_config(csv_file))
    assert summary["format_version"] == 1 and summary["data"]["min_item_count"] == 2
    assert summary["data"]["path"] == str(csv_file) and "max_len" not in summary["data"]
    assert (summary["n_users"], summary["n_items"], summary["n_interactions"]) == \
        (direct.data.num_users, direct.data.num_items, direct.data.num_interactions)
    assert summary["split"]["fingerprint"] == direct.split.fingerprint and summary["protocol"]["name"] == "loo"


def test_an_unknown_format_version_is_refused(prepared_dir):
    summary = read_summary(prepared_dir)
    (prepared_dir / "summary.json").write_text(json.dumps({**summary, "format_version": 99}))
    with pytest.raises(SinerecError, match="prepared format version 99, this sinerec reads 1"):
        load_sequences(prepared_dir)
