"""benchmarks/speed: speed.py's quick mode runs and its fractions are the rate times FLOPs over the measured
peak; the CUDA path refuses clearly without CUDA; contention.py's summary is exact."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

SPEED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed"


def run(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """benchmarks/speed/NAME run as ``python NAME ARGS`` in this process; its exit code."""
    monkeypatch.setattr(sys, "argv", [str(SPEED / name), *args])
    monkeypatch.syspath_prepend(str(SPEED))
    try:
        runpy.run_path(str(SPEED / name), run_name="__main__")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    return 0


def test_speed_quick_measures_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        code = run("speed.py", ["--quick", "--models", "mostpop,sine,sasrec", "--batches", "16,32", "--steps", "1",
                                "--repeats", "1", "--out", str(tmp_path)], monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    doc = json.loads((tmp_path / "speed.json").read_text())
    rows = doc["rows"]
    assert [(r["model"], r["precision"], r["batch"]) for r in rows] == [
        (m, p, b) for m in ("mostpop", "sine", "sasrec") for p in ("float32", "bf16") for b in (16, 32)]
    assert {r["status"] for r in rows if r["model"] == "mostpop"} == {"no trainable parameters"}
    for r in rows:
        if r["model"] == "mostpop":
            continue
        assert r["status"] == "ok" and r["load"] == 0 and r["steps"] == 1
        assert r["examples_per_second"] > 0 and r["flops_per_example"] > 0
        peak = r["gemm_peak_flops"]  # timed just before the row
        assert peak > 0 and r["fraction_of_peak"] == round(r["examples_per_second"] * r["flops_per_example"] / peak, 4)
        assert ("eval_users_per_second" in r) == (r["precision"] == "float32" and r["batch"] == 16)
    # the same first batch under float32 and bf16: autocast changes the precision, not the FLOPs
    for model in ("sine", "sasrec"):
        for batch in (16, 32):
            flops = {r["flops_per_example"] for r in rows if r["model"] == model and r["batch"] == batch}
            assert len(flops) == 1
    assert doc["gemm_peak_gflops"]["float32"] == round(doc["gemm_peak_flops"]["float32"] / 1e9, 2)
    table = (tmp_path / "speed.md").read_text()
    assert "| 0 | sine | bf16 | 32 |" in table and "no trainable parameters" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_speed_cuda_without_cuda_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run("speed.py", ["--quick", "--device", "cuda", "--out", str(tmp_path)], monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("speed.py: error: --device cuda: CUDA is not available")
    assert not (tmp_path / "speed.json").exists()


def test_contention_summary_is_median_and_ratio_to_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SPEED))
    import contention

    rows = [{"variant": v, "load": n, "examples_per_second": x} for v, n, x in [
        ("old", 0, 1000), ("old", 0, 1200), ("old", 0, 900), ("old", 2, 200), ("old", 2, 250), ("old", 2, 100),
        ("new", 0, 1100), ("new", 0, 1000), ("new", 0, 1050), ("new", 2, 400), ("new", 2, 380), ("new", 2, 500)]]
    assert contention.summarise(rows, ["old", "new"], [0, 2]) == {
        "old": {"load0": {"median_examples_per_second": 1000, "ratio_to_idle": 1.0},
                "load2": {"median_examples_per_second": 200, "ratio_to_idle": 0.2}},
        "new": {"load0": {"median_examples_per_second": 1050, "ratio_to_idle": 1.0},
                "load2": {"median_examples_per_second": 400, "ratio_to_idle": 0.381}}}
    assert contention.find_key({"a": {"machine": {"torch_threads": 3}}}, "torch_threads") == 3
    env = contention.clean_env()
    assert not {"OMP_WAIT_POLICY", "OMP_NUM_THREADS", "SINEREC_PROCESS_DEFAULTS"} & set(env)
    assert contention.VARIANTS["old"] == {"SINEREC_PROCESS_DEFAULTS": "0"} and contention.VARIANTS["new"] == {}
    # the precision variants keep sinerec's process defaults and pin train.amp on the command line
    assert contention.VARIANTS["new-float32"] == contention.VARIANTS["new-bf16"] == {}
    assert contention.VARIANT_ARGS == {"new-float32": ["--set", "train.amp=off"],
                                       "new-bf16": ["--set", "train.amp=bf16"]}


def test_contention_refuses_an_unknown_variant(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run("contention.py", ["--variants", "old,fast"], monkeypatch) == 2
    assert "--variants: unknown ['fast']" in capsys.readouterr().err


def test_contention_summarises_logged_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"repeat": i, "load": n, "variant": "new", "examples_per_second": x, "seconds": 1.0, "torch_threads": t,
             "loadavg_before": None} for i, n, x, t in [(0, 0, 600, 2), (1, 0, 800, 2), (0, 2, 300, 1), (1, 2, 200, 1)]]
    log = tmp_path / "log.txt"
    log.write_text("starting\n" + "".join(json.dumps(r) + "\n" for r in rows))
    assert run("contention.py", ["--rows", str(log), "--out", str(tmp_path), "--variants", "old,new"],
               monkeypatch) == 0
    doc = json.loads((tmp_path / "contention.json").read_text())
    assert doc["rows"] == rows and doc["repeats_done"] == {"new": {"0": 2, "2": 2}}
    assert doc["summary"] == {"new": {"load0": {"median_examples_per_second": 700, "ratio_to_idle": 1.0},
                                      "load2": {"median_examples_per_second": 250, "ratio_to_idle": 0.357}}}
    assert "| new | 2 | 250 | 0.357 | 1 |" in (tmp_path / "contention.md").read_text()


def test_fusion_quick_interleaves_and_reports_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = run("fusion.py", ["--quick", "--modes", "eager", "--steps", "1", "--rounds", "2", "--batch", "32",
                             "--out", str(tmp_path)], monkeypatch)
    assert code == 0
    doc = json.loads((tmp_path / "fusion.json").read_text())
    assert set(doc["timings"]) == {"eager/float32", "eager/bf16"}
    assert all(len(v) == 2 and min(v) > 0 for v in doc["timings"].values())  # two interleaved rounds each
    base = sorted(doc["timings"]["eager/float32"])
    summary = doc["summary"]["eager/float32"]
    assert summary["examples_per_second"] == round(sum(base) / 2, 1) and summary["vs_eager_float32"] == 1.0
    for name, precision in (("eager/float32", "float32"), ("eager/bf16", "bf16")):  # rate x FLOPs / its peak
        s = doc["summary"][name]
        expected = s["examples_per_second"] * doc["flops_per_example"] / (1e9 * doc["gemm_peak_gflops"][precision])
        assert s["fraction_of_peak"] == pytest.approx(expected, rel=1e-3, abs=5e-5)  # rounded to 4 places
    assert "| eager | bf16 |" in (tmp_path / "fusion.md").read_text()


def test_fusion_summary_is_medians_over_eager_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SPEED))
    import fusion

    summary = fusion.summarise({"eager/float32": [100.0, 300.0, 200.0], "compile/bf16": [500.0, 900.0, 400.0]})
    assert summary == {"eager/float32": {"examples_per_second": 200.0, "vs_eager_float32": 1.0},
                       "compile/bf16": {"examples_per_second": 500.0, "vs_eager_float32": 2.5}}
    assert fusion.summarise({"compile/bf16": [1.0]})["compile/bf16"]["vs_eager_float32"] is None


def test_fusion_refuses_an_unknown_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert run("fusion.py", ["--quick", "--modes", "jit", "--out", str(tmp_path)], monkeypatch) == 2
    assert "unknown modes or precisions: ['jit']" in capsys.readouterr().err


def test_bf16_accuracy_summary_applies_the_spread_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    summarise = types.SimpleNamespace(**runpy.run_path(str(SPEED / "bf16-accuracy" / "summarise.py")))

    def doc(valid_mean: float, valid_std: float) -> dict:
        stat = {"mean": 0.1, "std": 0.001}
        return {"summary": {"sine": {"n_seeds": 3, "valid": {"NDCG@10": {"mean": valid_mean, "std": valid_std}},
                                     "test": {"NDCG@10": stat, "HR@10": stat},
                                     "examples_per_second": {"mean": 1000.0, "std": 1.0}}}}

    f32, bf16 = tmp_path / "f32", tmp_path / "bf16"
    for folder, name, d in ((f32, "ml-1m-both", doc(0.1300, 0.0017)), (bf16, "ml-1m-bf16", doc(0.1285, 0.0010)),
                            (f32, "amazon-beauty-both", doc(0.0650, 0.0005)),
                            (bf16, "amazon-beauty-bf16", doc(0.0640, 0.0006))):
        (folder / name).mkdir(parents=True)
        (folder / name / "results.json").write_text(json.dumps(d))
    text = summarise.summarise(bf16, f32)
    assert "- ml-1m: validation NDCG@10 bf16 - float32 = -0.15 points: **within**" in text  # 0.15 <= 0.17
    assert "- amazon-beauty: validation NDCG@10 bf16 - float32 = -0.10 points: **outside**" in text  # 0.10 > 0.06
    assert summarise.within_spread({"mean": 0.5, "std": 0.2}, {"mean": 0.3, "std": 0.1})  # bf16's own sd widens
    assert not summarise.within_spread({"mean": 0.5, "std": 0.1}, {"mean": 0.3, "std": 0.1})


def test_profile_step_splits_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = run("profile_step.py", ["--quick", "--steps", "2", "--batch", "64", "--rows", "5",
                                   "--out", str(tmp_path)], monkeypatch)
    assert code == 0
    doc = json.loads((tmp_path / "profile-sine-float32-64.json").read_text())
    seconds, profiled = doc["seconds"], doc["profiled"]
    rate = 2 * 64 / (seconds["batching"] + seconds["step"])  # the seconds are rounded to 0.1 ms
    assert doc["examples_per_second"] == pytest.approx(rate, rel=0.01)
    assert 0 < profiled["aten_self_seconds"] <= profiled["wall_seconds"] * 1.05
    ops = doc["operators"]
    assert len(ops) == 5 and all(o["name"].startswith("aten::") for o in ops)
    assert [o["self_seconds"] for o in ops] == sorted((o["self_seconds"] for o in ops), reverse=True)
    assert any(o["name"] == "aten::mm" for o in ops)  # the projections and the softmax logits


def test_profile_step_eval_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = run("profile_step.py", ["--quick", "--part", "eval", "--rows", "3", "--out", str(tmp_path)],
               monkeypatch)
    assert code == 0
    doc = json.loads((tmp_path / "profile-eval-sine.json").read_text())
    assert doc["queries"] == 300 and doc["users_per_second"] > 0  # every planted user is a validation query
    assert len(doc["operators"]) == 3 and "users/s" in (tmp_path / "profile-eval-sine.md").read_text()
