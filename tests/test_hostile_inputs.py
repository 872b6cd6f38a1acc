"""Hostile inputs through the real command line (``sinerec.cli.main``): bad settings, bad data files, damaged
run directories, a busy or reused ``--out``, resumes that change things. Each must end with exit code 2 and
one line on stderr naming the key / file / value, without a traceback and without a partial run directory.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from sinerec import runs, storage
from sinerec.cli import main

TINY = ["--model", "sine", "--set", "data.max_len=6", "--set", "model_params.dim=8", "--set",
        "model_params.num_concepts=4", "--set", "model_params.num_interests=2", "--batch-size", "64",
        "--threads", "1", "--quiet"]


def write_log(path: Path, n_users: int = 30, length: int = 7, n_items: int = 15, shift: int = 0) -> Path:
    """A small interaction CSV: user u's items are (u + t + shift) % n_items + 1 at times t."""
    rows = ["user_id,item_id,timestamp"]
    rows += [f"{u},{(u + t + shift) % n_items + 1},{t}" for u in range(n_users) for t in range(length)]
    path.write_text("\n".join(rows) + "\n")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sinerec: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ------------------------------------------------------------------------------------------------ settings
BAD_SETTINGS = [
    (["--set", "train.grad_clip=-1"], "train.grad_clip", "-1.0"),
    (["--lr", "nan"], "train.lr", "nan"),
    (["--lr", "0"], "train.lr", "0.0"),
    (["--set", "train.weight_decay=-0.1"], "train.weight_decay", "-0.1"),
    (["--set", "eval.batch_size=0"], "eval.batch_size", "0"),
    (["--set", "eval.item_chunk=-1"], "eval.item_chunk", "-1"),
    (["--set", "eval.ks=[10,0]"], "eval.ks", "0"),
    (["--set", 'eval.metrics=["HR","Precision"]'], "eval.metrics", "'Precision'"),
    (["--set", "train.sampler_power=nan"], "train.sampler_power", "nan"),
    (["--seed", "-1"], "train.seed", "-1"),
    (["--seed", str(2**32)], "train.seed", str(2**32)),
    (["--set", "protocol.seed=-5"], "protocol.seed", "-5"),
    (["--device", "gpu"], "train.device", "'gpu'"),
    (["--device", "cuda:x"], "train.device", "'cuda:x'"),
    (["--set", "train.max_steps_per_epoch=-1"], "train.max_steps_per_epoch", "-1"),
    (["--threads", "0"], "train.threads", "0"),
    (["--epochs", "0"], "train.epochs", "0"),
    (["--set", "data.min_user_count=-2"], "data.min_user_count", "-2"),
    (["--set", "data.duplicates=some"], "data.duplicates", "'some'"),
]


@pytest.mark.parametrize(("args", "key", "value"), BAD_SETTINGS, ids=[" ".join(a) for a, _, _ in BAD_SETTINGS])
def test_bad_setting_is_one_line_naming_key_and_value(tmp_path, capsys, args, key, value):
    csv = write_log(tmp_path / "log.csv")
    code, _, err = run_cli(capsys, "train", "--path", str(csv), "--out", str(tmp_path / "run"), *TINY, *args)
    assert_one_line_error(code, err, key, value)
    assert not (tmp_path / "run").exists()


def test_non_utf8_config_file(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_bytes(b"[train]\nlr = 0.1  # caf\xe9\n")
    code, _, err = run_cli(capsys, "train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, str(config), "UTF-8")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "--run", "x", "--port", "-5"],
     "argument --port: should be an integer between 1 and 65535, got '-5'"),
    (["serve", "--run", "x", "--port", "70000"],
     "argument --port: should be an integer between 1 and 65535, got '70000'"),
    (["serve", "--run", "x", "--max-concurrency", "-1"],
     "argument --max-concurrency: should be an integer >= 1, got '-1'"),
    (["serve", "--run", "x", "--max-k", "ten"], "argument --max-k: should be an integer >= 1, got 'ten'"),
    (["recommend", "--run", "x", "--user", "1", "--k", "0"], "argument --k: should be an integer >= 1, got '0'"),
    (["index", "build", "--run", "x", "--recall-queries", "-1"],
     "argument --recall-queries: should be an integer >= 0, got '-1'"),
])
def test_bad_command_line_numbers_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ data
HEADER = b"user_id,item_id,timestamp\n"
BAD_DATA = [
    ("header-only", HEADER, "loo", ["dataset header-only", "no interactions", "0 read"]),
    ("one-row", HEADER + b"1,10,1\n", "loo", ["dataset one-row", "nobody can be evaluated under loo", "1 users"]),
    ("single-items", HEADER + b"1,10,1\n2,11,1\n3,12,1\n", "comirec",
     ["dataset single-items", "nobody can be evaluated under comirec", "3 users", "longest sequence 1"]),
    ("two-each", HEADER + b"1,10,1\n1,11,2\n2,10,1\n2,12,2\n", "loo",
     ["dataset two-each", "nobody can be evaluated under loo", "2 users", "0 validation and 0 test users"]),
    ("big-timestamp", HEADER + b"1,10,1\n1,11,99999999999999999999\n", "loo",
     ["big-timestamp.csv, line 3", "timestamp 99999999999999999999 out of range"]),
    ("huge-float-timestamp", HEADER + b"1,10,1\n1,11,1e300\n1,12,3\n", "loo",
     ["huge-float-timestamp.csv, line 3", "timestamp 1e300 out of range"]),
    ("nul-id", HEADER + b"1,10,1\n1,1\x001,2\n", "loo", ["nul-id.csv, line 3", "NUL character in item id"]),
    ("long-id", HEADER + b"1,10,1\n" + b"u" * 257 + b",11,2\n", "loo",
     ["long-id.csv, line 3", "user id longer than 256 characters (257)"]),
    ("long-numeric-id", HEADER + b"1,10,1\n1," + b"9" * 300 + b",2\n", "loo",
     ["long-numeric-id.csv, line 3", "item id longer than 256 characters (300)"]),
]


@pytest.mark.parametrize(("name", "content", "protocol", "needles"), BAD_DATA, ids=[d[0] for d in BAD_DATA])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, capsys, name, content, protocol, needles):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(content)
    code, _, err = run_cli(capsys, "train", "--model", "mostpop", "--path", str(path), "--dataset", name,
                           "--protocol", protocol, "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("content", "needle"), [
    (b"1 10 11 12\n2 10 1\x001\n", "line 2: NUL character in item id"),
    (b"1 10 11 12\n" + b"u" * 300 + b" 10 11\n", "line 2: user id longer than 256 characters (300)"),
])
def test_sequences_format_keeps_the_id_limits(tmp_path, capsys, content, needle):
    path = tmp_path / "seqs.txt"
    path.write_bytes(content)
    code, _, err = run_cli(capsys, "train", "--model", "mostpop", "--path", str(path), "--format", "sequences",
                           "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, f"{path}, {needle}")
    assert not (tmp_path / "run").exists()


def test_filters_that_leave_nothing(tmp_path, capsys):
    csv = write_log(tmp_path / "log.csv")
    code, _, err = run_cli(capsys, "train", "--model", "mostpop", "--path", str(csv), "--set",
                           "data.min_user_count=100", "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, "no interactions", "210 read", "min_user_count=100")
    assert not (tmp_path / "run").exists()


def test_the_longest_allowed_id_and_timestamp_are_read(tmp_path, capsys):
    path = tmp_path / "edge.csv"
    rows = [f"{'u' * 256},{i},{t}" for i, t in ((1, -(2**62)), (2, 0), (3, 2**62), (4, 9.2e18))]
    path.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    code, _, err = run_cli(capsys, "train", "--model", "mostpop", "--path", str(path), "--out",
                           str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    assert runs.load_data(tmp_path / "run").user_ids.tolist() == ["u" * 256]


# ------------------------------------------------------------------------------------------------ run dirs
@pytest.fixture
def trained(tmp_path, capsys) -> tuple[Path, Path]:
    """(interaction file, run directory) of a 2-epoch tiny SINE run."""
    csv = write_log(tmp_path / "log.csv")
    code, _, err = run_cli(capsys, "train", "--path", str(csv), "--out", str(tmp_path / "run"), "--epochs", "2",
                           *TINY)
    assert code == 0, err
    return csv, tmp_path / "run"


def epochs_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / runs.LOG).read_text().splitlines()]


def test_resume_with_more_epochs_trains_them_and_saves_the_settings(trained, capsys):
    csv, run_dir = trained
    state = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)
    info = json.loads((run_dir / runs.DATA_INFO).read_text())
    assert (state["data_fingerprint"], state["split_fingerprint"]) == (info["dataset"]["fingerprint"],
                                                                       info["protocol"]["fingerprint"])
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", "--epochs", "3", "--lr", "0.005",
                           "--batch-size", "32", "--threads", "1", "--device", "cpu", "--quiet", "--set",
                           "train.patience=7")
    assert code == 0, err
    assert epochs_logged(run_dir) == [1, 2, 3]
    assert json.loads((run_dir / runs.METRICS).read_text())["train"]["epochs"] == 3
    train = json.loads((run_dir / runs.CONFIG).read_text())["train"]
    assert (train["epochs"], train["lr"], train["batch_size"], train["threads"], train["device"],
            train["progress"], train["patience"]) == (3, 0.005, 32, 1, "cpu", False, 7)
    optimizer = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)["optimizer"]
    assert [group["lr"] for group in optimizer["param_groups"]] == [0.005]
    # --compile applies from the next epoch: with nothing left to train it is saved and nothing compiles
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", "--compile", "--quiet")
    assert code == 0, err
    assert json.loads((run_dir / runs.CONFIG).read_text())["train"]["compile"] is True
    assert epochs_logged(run_dir) == [1, 2, 3]


@pytest.mark.parametrize(("args", "needles"), [
    (["--epochs", "1"], ["has trained 2 epochs", "train.epochs=1 cannot be fewer"]),
    (["--seed", "7"], ["--resume cannot change train.seed: 2021 -> 7"]),
    (["--model", "gru4rec"], ['model: "sine" -> "gru4rec"']),
    (["--protocol", "comirec"], ["protocol"]),
    (["--set", "model_params.dim=16"], ["model_params"]),
    (["--set", "data.max_len=9"], ["data.max_len: 6 -> 9"]),
    (["--config", "other.toml"], ["not --config"]),
])
def test_resume_refuses_what_it_cannot_change(trained, capsys, args, needles):
    _, run_dir = trained
    before = (run_dir / runs.CONFIG).read_text(), (run_dir / runs.CHECKPOINT).read_bytes()
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", *args)
    assert_one_line_error(code, err, *needles)
    assert ((run_dir / runs.CONFIG).read_text(), (run_dir / runs.CHECKPOINT).read_bytes()) == before


def test_resume_refuses_changed_data(trained, capsys):
    csv, run_dir = trained
    write_log(csv, shift=1)  # same users and items, other sequences
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume")
    assert_one_line_error(code, err, "was trained on other data", "Restore the run's data files")
    write_log(csv, n_users=31)  # one user more
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume")
    assert_one_line_error(code, err, "was trained on other data")
    # a checkpoint older than the fingerprints: data.json's are compared
    state = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)
    del state["data_fingerprint"], state["split_fingerprint"]
    torch.save(state, run_dir / runs.CHECKPOINT)
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume")
    assert_one_line_error(code, err, "was trained on other data")
    write_log(csv)  # the run's own data again
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", "--quiet")
    assert code == 0, err


def test_a_second_writer_is_refused_with_the_holders_pid(trained, capsys):
    csv, run_dir = trained
    with runs.locked(run_dir):  # another open file description: flock conflicts as across processes
        code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", "--quiet")
        assert_one_line_error(code, err, "in use by another sinerec process", f"pid {os.getpid()}")
        other = run_dir.parent / "other"
        other.mkdir()
        code, _, err = run_cli(capsys, "train", "--path", str(csv), "--out", str(other), "--epochs", "1", *TINY)
        assert code == 0, err  # the lock is per run directory
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", "--quiet")
    assert code == 0, err  # released


def test_reusing_the_out_of_a_run_killed_before_its_checkpoint_starts_clean(tmp_path, capsys):
    csv = write_log(tmp_path / "log.csv")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runs.LOG).write_text('{"epoch": 1, "loss": 9.0}\n{"epoch": 2, "lo')  # killed mid-line
    (run_dir / runs.MODEL).write_bytes(b"half a model")
    (run_dir / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"interrupted write")
    (run_dir / ".export.x.tmp").mkdir()
    code, _, err = run_cli(capsys, "train", "--path", str(csv), "--out", str(run_dir), "--epochs", "1", *TINY)
    assert code == 0, err
    assert epochs_logged(run_dir) == [1]
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(runs.LAYOUT)  # no temporary left


def test_out_that_is_a_file(tmp_path, capsys):
    csv = write_log(tmp_path / "log.csv")
    (tmp_path / "run").write_text("not a folder")
    code, _, err = run_cli(capsys, "train", "--model", "mostpop", "--path", str(csv), "--out",
                           str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, f"{tmp_path / 'run'}: --out is a file")


@pytest.mark.parametrize("name", [runs.MODEL, runs.CHECKPOINT])
def test_damaged_tensor_files(trained, capsys, name):
    _, run_dir = trained
    path = run_dir / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # torn
    argv = ["train", "--out", str(run_dir), "--resume", "--quiet"] if name == runs.CHECKPOINT else \
        ["recommend", "--run", str(run_dir), "--user", "1"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, f"{path}: damaged or not a sinerec tensor file")


def test_damaged_index_folder(trained, capsys, tmp_path):
    _, run_dir = trained
    code, _, err = run_cli(capsys, "index", "build", "--run", str(run_dir), "--backend", "torch", "--out",
                           str(tmp_path / "index"), "--recall-queries", "0")
    assert code == 0, err
    for path in (tmp_path / "index").iterdir():
        if path.name != "index.json":
            path.write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "recommend", "--run", str(run_dir), "--user", "1", "--index",
                           str(tmp_path / "index"))
    assert_one_line_error(code, err, f"{tmp_path / 'index'}: the stored index cannot be read")


def test_serving_needs_neither_log_nor_metrics(trained, capsys):
    _, run_dir = trained
    good = runs.load_run(run_dir)
    (run_dir / runs.METRICS).write_text('{"model": "sine", "te')  # torn
    with (run_dir / runs.LOG).open("a") as fh:
        fh.write('{"epoch": 3, "lo')
    with pytest.warns(UserWarning) as caught:
        loaded = runs.load_run(run_dir)
    assert loaded.metrics is None and loaded.history == good.history
    assert any("metrics.json: damaged" in str(w.message) for w in caught)
    assert any("log.jsonl: ignoring 1 damaged line(s) (first: line 3)" in str(w.message) for w in caught)
    (run_dir / runs.METRICS).unlink()
    (run_dir / runs.LOG).unlink()
    loaded = runs.load_run(run_dir)
    assert loaded.metrics is None and loaded.history == []
    code, out, err = run_cli(capsys, "recommend", "--run", str(run_dir), "--user", "1")
    assert code == 0, err


def test_damaged_json_of_a_run_directory(trained, capsys):
    _, run_dir = trained
    (run_dir / runs.CONFIG).write_text('{"model": ')
    code, _, err = run_cli(capsys, "recommend", "--run", str(run_dir), "--user", "1")
    assert_one_line_error(code, err, f"{run_dir / runs.CONFIG}: damaged, not valid JSON")


def test_full_disk_is_one_line_naming_the_file_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    csv = write_log(tmp_path / "log.csv")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage.os, "fsync", no_space)
    argv = ["train", "--model", "mostpop", "--path", str(csv), "--out", str(tmp_path / "run"), "--quiet"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, f"{tmp_path / 'run' / runs.CONFIG}: No space left on device")
    assert not list((tmp_path / "run").glob(storage.TEMPORARY_GLOB))
    with pytest.raises(OSError, match="No space left"):
        main(["--debug", *argv])
    monkeypatch.setenv("SINEREC_DEBUG", "1")
    with pytest.raises(OSError, match="No space left"):
        main(argv)


def test_an_internal_error_is_one_line_with_exit_1(tmp_path, capsys, monkeypatch):
    import sinerec.pipeline

    def broken(config):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(sinerec.pipeline, "prepare", broken)
    monkeypatch.setattr("sinerec.job.prepare", broken)
    code, _, err = run_cli(capsys, "train", "--model", "mostpop", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 1
    assert err.strip().splitlines() == ["sinerec: internal error: ZeroDivisionError: a bug (rerun with --debug or "
                                        "SINEREC_DEBUG=1 for the traceback, and please report it)"]


def test_the_lock_of_a_killed_process_is_released(trained, capsys):
    import signal
    import subprocess
    import sys

    _, run_dir = trained
    (run_dir / ".model.pt.abc123.tmp").write_bytes(b"left by a killed write")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from sinerec import runs\n"
         "with runs.locked(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)", str(run_dir)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", "--quiet")
        assert_one_line_error(code, err, f"in use by another sinerec process (pid {holder.pid})")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not (run_dir / ".model.pt.abc123.tmp").exists()  # the holder removed it when it took the lock
    (run_dir / ".log.jsonl.def456.tmp").write_bytes(b"another")
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--resume", "--quiet")
    assert code == 0, err
    assert not list(run_dir.glob(storage.TEMPORARY_GLOB))


def test_damaged_sequences_of_a_run_directory(trained, capsys):
    _, run_dir = trained
    (run_dir / runs.SEQUENCES).write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run_cli(capsys, "recommend", "--run", str(run_dir), "--user", "1")
    assert_one_line_error(code, err, f"{run_dir / runs.SEQUENCES}: damaged")


def test_a_warning_on_the_command_line_reads_like_an_error_line(tmp_path):
    """A skipped malformed line is reported as one `sinerec: warning:` line naming file and line, not as
    Python's warning format (a library file, its line number and the source line that warned)."""
    import subprocess
    import sys

    log = tmp_path / "log.csv"
    rows = [f"{u},{i},7,pv,{1511568000 + 60 * i}" for u in range(6) for i in range(1, 7)]
    log.write_text("\n".join(rows[:10] + ["123,456,oops,pv"] + rows[10:]) + "\n")
    done = subprocess.run([sys.executable, "-m", "sinerec", "data", "describe", "--path", str(log), "--format",
                           "taobao", "--skip-bad-lines", "--json"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sinerec: warning: "), done.stderr
    assert str(log) in lines[0] and "line 11" in lines[0] and ".py:" not in done.stderr
