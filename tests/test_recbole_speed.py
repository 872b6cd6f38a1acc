"""benchmarks/speed/recbole_speed.py without RecBole: the ML-1M conversion to RecBole's atomic file, the merge of
RecBole's rows with sinerec's and their ratio, the child's failure row, and speed.py's --recbole-python flag."""

from __future__ import annotations

import argparse
import importlib.util
import json
import runpy
import sys
from pathlib import Path

import pytest

SPEED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed"


@pytest.fixture
def recbole_speed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(SPEED))
    import recbole_speed

    return recbole_speed


def sinerec_row(model: str, batch: int, rate: float | None) -> dict:
    return {"load": 2, "model": model, "precision": "float32", "batch": batch, "status": "ok",
            "examples_per_second": rate}


def recbole_row(model: str, batch: int, anomaly: str, rate: float) -> dict:
    return {"framework": "recbole", "model": model, "precision": "float32", "batch": batch, "anomaly": anomaly,
            "status": "ok", "examples_per_second": rate}


def test_atomic_file_keeps_user_item_and_time_in_file_order(tmp_path: Path, recbole_speed) -> None:
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::1193::5::978300760\n1::661::3::978302109\n\n22::7::1::5\n", encoding="latin-1")
    inter = recbole_speed.write_atomic(ratings, tmp_path / "work")
    assert inter == tmp_path / "work" / "ml-1m" / "ml-1m.inter"
    assert inter.read_text() == ("user_id:token\titem_id:token\ttimestamp:float\n1\t1193\t978300760\n"
                                 "1\t661\t978302109\n22\t7\t5\n")
    ratings.write_text("9::9::9::9\n")  # an existing atomic file is reused, not rewritten
    assert recbole_speed.write_atomic(ratings, tmp_path / "work").read_text() == inter.read_text()


def test_atomic_file_names_a_bad_line(tmp_path: Path, recbole_speed) -> None:
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::1193::5::978300760\n1,661,3,978302109\n")
    with pytest.raises(SystemExit) as stop:
        recbole_speed.write_atomic(ratings, tmp_path / "work")
    assert str(stop.value) == (f"recbole_speed.py: error: {ratings}:2: expected user::item::rating::timestamp, "
                               "got '1,661,3,978302109'")
    assert not (tmp_path / "work" / "ml-1m" / "ml-1m.inter").exists()


def test_ratio_is_sinerec_over_recbole_for_each_anomaly_setting(recbole_speed) -> None:
    merged = recbole_speed.with_ratios(sinerec_row("sine", 2048, 4400.0),
                                       [recbole_row("sine", 2048, "shipped", 800.0),
                                        recbole_row("sine", 2048, "off", 1300.0)])
    assert [(r["anomaly"], r["load"], r["sinerec_examples_per_second"], r["ratio"]) for r in merged] == [
        ("shipped", 2, 4400.0, 5.5), ("off", 2, 4400.0, 3.385)]  # 4400 / 1300 = 3.3846
    assert merged[0]["examples_per_second"] == 800.0 and merged[0]["framework"] == "recbole"


def test_a_failed_row_has_no_ratio_and_a_mismatched_row_is_refused(recbole_speed) -> None:
    failed = {"framework": "recbole", "model": "sasrec", "precision": "float32", "batch": 256,
              "status": "failed (exit 1): ModuleNotFoundError: No module named 'recbole'"}
    [merged] = recbole_speed.with_ratios(sinerec_row("sasrec", 256, 9000.0), [failed])
    assert merged["ratio"] is None and merged["sinerec_examples_per_second"] == 9000.0
    with pytest.raises(ValueError, match=r"RecBole row \['sine', 'float32', 256\] next to sinerec's "
                                         r"\['sine', 'float32', 2048\]"):
        recbole_speed.with_ratios(sinerec_row("sine", 2048, 1.0), [recbole_row("sine", 256, "off", 1.0)])


def test_markdown_has_one_line_per_recbole_row(recbole_speed) -> None:
    merged = recbole_speed.with_ratios(sinerec_row("sine", 2048, 4400.0),
                                       [recbole_row("sine", 2048, "shipped", 800.0)])
    failed = recbole_speed.with_ratios(sinerec_row("sasrec", 256, 9000.0), [
        {"framework": "recbole", "model": "sasrec", "precision": "float32", "batch": 256, "status": "failed (exit 1)"}])
    assert recbole_speed.markdown_rows(merged + failed)[2:] == [
        "| 2 | sine | 2048 | 4,400 | shipped | 800 | 5.50x |",
        "| 2 | sasrec | 256 | 9,000 | | failed (exit 1) | |"]


@pytest.mark.skipif(importlib.util.find_spec("recbole") is not None, reason="checks the row without RecBole")
def test_child_without_recbole_gives_one_failed_row(tmp_path: Path, recbole_speed) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text("1::2::5::3\n1::3::5::4\n")
    rows = recbole_speed.run_child(sys.executable, "sine", 256, data_dir=str(tmp_path / "ml-1m"), steps=1, threads=1,
                                   work_dir=tmp_path / "work")
    assert rows == [{"framework": "recbole", "model": "sine", "precision": "float32", "batch": 256,
                     "status": "failed (exit 1): ModuleNotFoundError: No module named 'recbole'"}]
    assert (tmp_path / "work" / "ml-1m" / "ml-1m.inter").is_file()  # converted before RecBole was needed


def test_child_rows_are_read_from_its_json_lines(tmp_path: Path, recbole_speed) -> None:
    row = recbole_row("sasrec", 2048, "off", 1234.5)
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho 'RecBole says hello'\necho '{json.dumps(row)}'\n")
    fake.chmod(0o755)
    assert recbole_speed.run_child(str(fake), "sasrec", 2048, data_dir=str(tmp_path), steps=1, threads=1,
                                   work_dir=tmp_path) == [row]


def run_speed(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", [str(SPEED / "speed.py"), *args])
    monkeypatch.syspath_prepend(str(SPEED))
    try:
        runpy.run_path(str(SPEED / "speed.py"), run_name="__main__")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    return 0


@pytest.mark.parametrize("args, message", [
    (["--recbole-python", "/nonexistent/bin/python"],
     "--recbole-python /nonexistent/bin/python: no such file (the python of RecBole's venv: README)"),
    (["--quick", "--recbole-python", sys.executable],
     f"--recbole-python {sys.executable}: RecBole's rows need ML-1M (--data-dir), not --quick")])
def test_speed_refuses_a_bad_recbole_python(args: list[str], message: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run_speed([*args, "--out", str(tmp_path)], monkeypatch) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"speed.py: error: {message}"
    assert not (tmp_path / "speed.json").exists()


def test_speed_document_has_recbole_only_with_the_flag(monkeypatch: pytest.MonkeyPatch, recbole_speed) -> None:
    import speed
    import torch

    args = argparse.Namespace(compile=False, quick=False, data_dir="ml-1m", steps=20, note="", recbole_python=None)
    peaks = {"float32": 1e11, "bf16": 2e11}
    assert "recbole" not in speed.document(args, torch.device("cpu"), peaks, [])
    args.recbole_python = "/venv/bin/python"
    merged = recbole_speed.with_ratios(sinerec_row("sine", 2048, 4400.0),
                                       [recbole_row("sine", 2048, "shipped", 800.0)])
    doc = speed.document(args, torch.device("cpu"), peaks, [], merged)
    assert doc["recbole"] == {"python": "/venv/bin/python", "differences": recbole_speed.DIFFERENCES, "rows": merged}
    table = speed.markdown(doc)
    assert "## RecBole side by side" in table
    assert table.endswith("| 2 | sine | 2048 | 4,400 | shipped | 800 | 5.50x |\n")
