"""The command line's datasets table, help texts and group help, and `evaluate` / `predict` on a saved run."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

import sinerec
from sinerec.cli import build_parser, main
from sinerec.cli.common import HelpFormatter, walk_parsers
from sinerec.data.splits import make_split
from sinerec.evaluate import evaluate
from sinerec.runs import load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"user": np.repeat(np.arange(50), 10), "item": rng.integers(1, 30, 500),
                          "timestamp": np.arange(500)})
    threads = torch.get_num_threads()
    try:
        run = sinerec.fit(frame, model="sasrec", out=tmp_path_factory.mktemp("cli") / "run", epochs=1,
                          max_steps_per_epoch=3, threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run.run_dir


def test_datasets_is_a_table_and_json_keeps_every_field(capsys):
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "users", "items", "interactions", "licence", "where"]
    small = next(line for line in lines if line.startswith("ml-latest-small"))
    assert small.split()[1:4] == ["610", "9,724", "100,836"] and "built-in:" in small
    assert main(["datasets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "ml-latest-small" and "licence" in rows[0] and "url" in rows[0]


def test_every_flag_has_help_and_its_default():
    parsers = walk_parsers(build_parser())
    assert {p.prog for p in parsers} >= {"sinerec evaluate", "sinerec predict", "sinerec config show",
                                         "sinerec data describe", "sinerec index build"}
    for parser in parsers:
        assert parser.formatter_class is HelpFormatter
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{parser.prog} {action.option_strings[0]} has no help"
            if action.default not in (None, False, [], argparse.SUPPRESS):
                assert "default" in text, f"{parser.prog} {action.option_strings[0]}: default not shown"
    predict = next(p for p in parsers if p.prog == "sinerec predict").format_help()
    assert "items per user (default: 10)" in " ".join(predict.split())
    assert "examples:\n  sinerec predict --run RUN --users all" in predict


@pytest.mark.parametrize("argv", [[], ["data"], ["index"], ["config"]])
def test_a_missing_command_prints_that_level_of_help_and_exits_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {' '.join(['sinerec', *argv])} ")


def test_evaluate_reproduces_the_runs_metrics_and_rescores_with_history_ranked(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert doc["test"] == saved["test"] and doc["valid"] == saved["valid"] and doc["exclude_history"] is True
    assert main(["evaluate", "--run", str(run_dir), "--set", "protocol.exclude_history=false", "--part", "test",
                 "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    run = load_run(run_dir)
    split = make_split(run.data, run.config.protocol)
    expected = evaluate(run.model, run.data, split.test, run.config.data.max_len, False, run.config.eval)
    assert ranked["test"] == expected.means and "valid" not in ranked and ranked["exclude_history"] is False
    assert main(["evaluate", "--run", str(run_dir), "--part", "test"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("test") and "history excluded; trained under loo" in out


def test_evaluate_refuses_settings_that_need_retraining(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir), "--set", "train.lr=0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sinerec: error: evaluate: 'train.lr=0.1': only protocol.* and eval.* settings can change "
                   "for a trained run (the rest needs retraining)"]


def test_predict_writes_the_batched_top_k(run_dir, tmp_path, capsys):
    out = tmp_path / "top.parquet"
    assert main(["predict", "--run", str(run_dir), "--users", "all", "--k", "3", "--out", str(out),
                 "--batch-size", "7"]) == 0
    frame = pd.read_parquet(out)
    expected = sinerec.load(run_dir).recommend_users(None, k=3)
    pd.testing.assert_frame_equal(frame, expected)
    assert len(frame) == 150 and capsys.readouterr().out.startswith("150 rows (50 users x up to 3 items)")
    ids = tmp_path / "ids.txt"
    ids.write_text("user_id\n7\n\n3\n")
    csv = tmp_path / "some.csv"
    assert main(["predict", "--run", str(run_dir), "--users", str(ids), "--k", "2", "--out", str(csv)]) == 0
    picked = pd.read_csv(csv)
    assert picked["user_id"].tolist() == [7, 7, 3, 3] and picked["rank"].tolist() == [1, 2, 1, 2]
    assert main(["predict", "--run", str(run_dir), "--users", "1,2", "--out", str(tmp_path / "x.csv")]) == 0
    assert pd.read_csv(tmp_path / "x.csv")["user_id"].tolist() == [1] * 10 + [2] * 10


def test_predict_errors_are_one_line(run_dir, tmp_path, capsys):
    assert main(["predict", "--run", str(run_dir), "--users", "1,nobody", "--out", str(tmp_path / "a.csv")]) == 2
    assert capsys.readouterr().err.strip() == "sinerec: error: users: 1 unknown user id(s): 'nobody'"
    assert main(["predict", "--run", str(run_dir), "--out", str(tmp_path / "a.json")]) == 2
    assert "unknown suffix '.json'; use .parquet or .csv" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()


def test_the_command_line_prints_the_sinerec_logger(capsys):
    import logging

    from sinerec.cli import ConsoleHandler, configure_logging

    configure_logging()
    configure_logging()  # once per process
    logger = logging.getLogger("sinerec")
    assert sum(isinstance(h, ConsoleHandler) for h in logger.handlers) == 1
    logger.info("progress line")
    logger.warning("a warning")
    captured = capsys.readouterr()
    assert captured.out == "progress line\n" and captured.err == "a warning\n"
