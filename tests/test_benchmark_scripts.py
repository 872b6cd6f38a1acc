"""Smoke tests of the scripts under benchmarks/: each answers --help, and the cheap ones run for real on tiny
inputs (rescore_history on a tiny benchmark, explain_nmi on a tiny SINE run, reproduce_sine_ml1m's summary)."""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import train_run

from sinerec.data.preprocess import preprocess
from sinerec.data.synthetic import planted_concepts

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(str(p.relative_to(BENCHMARKS)) for p in BENCHMARKS.rglob("*.py")
                 if not {"runs", "data"} & set(p.relative_to(BENCHMARKS).parts))


def run_script(name: str, *args: str, monkeypatch) -> int:
    """Run benchmarks/NAME as ``python NAME ARGS`` in this process; its exit code (0 when it returns)."""
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / name), *args])
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    try:
        runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
    except SystemExit as stop:
        return 0 if stop.code is None else int(stop.code) if isinstance(stop.code, int) else 1
    return 0


def test_every_script_is_covered():
    # a new script joins the --help smoke test below; this list makes adding one a visible decision
    assert SCRIPTS == ["converged/interest_readouts.py", "converged/merge.py", "explain_nmi.py", "gpu_check.py",
                       "index_factory.py", "render_readme.py",
                      "reproduce_sine_ml1m.py", "rescore_history.py", "scaling.py", "serve_load.py",
                      "serve_workers.py", "sine-variants/summarise.py", "sparse_accuracy.py", "sparse_scaling.py",
                      "speed/bf16-accuracy/summarise.py", "speed/contention.py", "speed/fusion.py",
                      "speed/profile_step.py", "speed/recbole_speed.py", "speed/speed.py",
                      "taobao-scale/measure_ingest.py", "taobao-scale/measure_ranks.py",
                      "taobao-scale/stages.py"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_answers_help(name, monkeypatch, capsys):
    assert run_script(name, "--help", monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--help" in out


def test_reproduce_summary_uses_the_sample_standard_deviation(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import reproduce_sine_ml1m as script

    rows = [{"variant": "paper", "test": {m: v for m in script.REPORTED}, "valid": {m: v for m in script.REPORTED},
             "epochs": 2, "best_epoch": 2, "seconds": 10.0, "seconds_per_epoch": 5.0, "examples_per_second": 100.0}
            for v in (0.1, 0.2, 0.3)]
    summary = script.summarise_rows(rows, ["paper"])["paper"]
    mean, sd = summary["test HR@10"]
    assert mean == pytest.approx(20.0) and sd == pytest.approx(10.0)  # sample sd of 10, 20, 30 (population: 8.16)
    assert summary["epochs"] == 2

def test_reproduce_keeps_the_rows_of_variants_it_did_not_run(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import argparse

    import reproduce_sine_ml1m as script

    def row(variant: str, v: float) -> dict:
        return {"variant": variant, "test": {m: v for m in script.REPORTED}, "valid": {m: v for m in script.REPORTED},
                "epochs": 2, "best_epoch": 2, "seconds": 10.0, "seconds_per_epoch": 5.0, "examples_per_second": 1.0}

    earlier = {"date": "2026-01-01", "command": "old command", "settings": {"batch_size": 256, "epochs": 2},
               "rows": [row("paper", 0.1), row("official", 0.2), row("paper-cosine", 0.9)]}
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    args = argparse.Namespace(out=str(tmp_path), variants=["paper-cosine"])
    new = {"rows": [row("paper-cosine", 0.3)], "summary": {}}
    merged = script.keep_earlier(args, new)
    # the old cosine row is replaced
    assert [r["variant"] for r in merged["rows"]] == ["paper", "official", "paper-cosine"]
    assert merged["summary"]["paper-cosine"]["test HR@10"][0] == pytest.approx(30.0)
    assert merged["summary"]["paper"]["test HR@10"][0] == pytest.approx(10.0)
    assert merged["earlier"] == [{"date": "2026-01-01", "command": "old command",
                                  "settings": {"batch_size": 256, "epochs": 2}, "variants": ["official", "paper"]}]



def test_reproduce_refuses_a_table_of_runs_in_different_precisions(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import argparse

    import reproduce_sine_ml1m as script

    metrics = {m: 0.1 for m in script.REPORTED}
    for seed, precision in enumerate(["float32", "bf16", None]):  # None: a run from before runs named it
        run = tmp_path / f"sine-paper-seed{seed}"
        run.mkdir()
        train = {"best_epoch": 1, "seconds": 2.0, **({"precision": precision} if precision else {})}
        (run / "metrics.json").write_text(json.dumps({"test": metrics, "valid": metrics, "train": train,
                                                      "dataset": {}, "protocol": {"fingerprint": "f"}}))
        (run / "log.jsonl").write_text(json.dumps({"seconds": 2.0, "examples_per_second": 5.0}) + "\n")
    args = argparse.Namespace(runs=str(tmp_path), variants=["paper"], seeds=[0, 2])
    assert [r["precision"] for r in script.summarise(args)["rows"]] == ["float32", "float32"]
    with pytest.raises(SystemExit, match=r"different precisions.*\('paper', 1, 'bf16'\).*train.amp=off"):
        script.summarise(argparse.Namespace(runs=str(tmp_path), variants=["paper"], seeds=[0, 1, 2]))


@pytest.mark.slow
def test_rescore_history_on_a_tiny_benchmark(tmp_path, monkeypatch, capsys):
    from sinerec.benchmark import run_benchmark
    from sinerec.config import ProtocolConfig
    from sinerec.data.splits import make_split
    from sinerec.pipeline import Prepared

    data = preprocess(planted_concepts(n_users=60, n_items=30, n_concepts=3, length=10, seed=1))
    prepared = Prepared(data, make_split(data, ProtocolConfig()), 0.0)
    run_benchmark(["mostpop"], out_dir=tmp_path / "bench", seeds=[0, 1], prepared=prepared, isolate=False,
                  overrides=["data.max_len=5", "train.threads=1"], log=lambda line: None)
    out = tmp_path / "history.json"
    assert run_script("rescore_history.py", str(tmp_path / "bench"), "--out", str(out), monkeypatch=monkeypatch) == 0
    doc = json.loads(out.read_text())["summary"]["mostpop"]
    bench = json.loads((tmp_path / "bench" / "results.json").read_text())["summary"]["mostpop"]["test"]
    assert doc["excluded"]["n_seeds"] == 2
    # excluded is the benchmark's own (loo) scoring: the same numbers
    assert doc["excluded"]["HR@10"]["mean"] == pytest.approx(bench["HR@10"]["mean"], rel=1e-12)
    assert set(doc["included"]) == {"HR@10", "NDCG@10", "HR@50", "NDCG@50", "n_seeds"}
    assert doc["included"]["n_seeds"] == 2
    assert doc["included"]["HR@10"]["std"] == 0.0  # MostPop: the seeds give the same weights
    # benchmarks record the history-ranked metrics themselves; --fill-records adds them to older records
    records = [tmp_path / "bench" / "runs" / f"mostpop-seed{s}" / "benchmark.json" for s in (0, 1)]
    recorded = json.loads(records[0].read_text())["test_history_ranked"]
    old = json.loads(records[1].read_text())
    records[1].write_text(json.dumps({k: v for k, v in old.items() if k != "test_history_ranked"}))
    assert run_script("rescore_history.py", str(tmp_path / "bench"), "--out", str(out), "--fill-records",
                      monkeypatch=monkeypatch) == 0
    assert json.loads(records[1].read_text()) == old  # written back exactly as the benchmark records it
    assert {m: recorded[m] for m in doc["included"] if m != "n_seeds"} == \
        {m: doc["included"][m]["mean"] for m in doc["included"] if m != "n_seeds"}
    # a run finished in an earlier sitting has only its committed records here: its record stands in for the
    # weights (the same numbers); one without the history-ranked metrics is left out, by name
    (records[0].parent / "model.pt").unlink()
    assert run_script("rescore_history.py", str(tmp_path / "bench"), "--out", str(out), monkeypatch=monkeypatch) == 0
    from_record = json.loads(out.read_text())
    assert from_record["summary"] == json.loads(json.dumps({"mostpop": doc})) and from_record["left_out"] == []
    first = json.loads(records[0].read_text())
    records[0].write_text(json.dumps({k: v for k, v in first.items() if k != "test_history_ranked"}))
    assert run_script("rescore_history.py", str(tmp_path / "bench"), "--out", str(out), monkeypatch=monkeypatch) == 0
    partial = json.loads(out.read_text())
    assert partial["left_out"] == ["mostpop-seed0"] and partial["summary"]["mostpop"]["included"]["n_seeds"] == 1
    assert "mostpop-seed0: left out (no model.pt here" in capsys.readouterr().out


@pytest.mark.slow
def test_explain_nmi_on_a_tiny_sine_run(tmp_path, monkeypatch, capsys):
    log = planted_concepts(n_users=40, n_items=30, n_concepts=5, length=9, seed=2)
    run_dir = train_run(tmp_path / "run", ["data.max_len=6", "model_params.dim=12", "model_params.num_concepts=7",
                                           "model_params.num_interests=3"], log)
    out = tmp_path / "nmi.json"
    events = log.events["item"].value_counts()
    threshold = int(events.median())  # about half of the items have at least this many events
    assert run_script("explain_nmi.py", "--run", f"toy={run_dir}", "--repeats", "3", "--out", str(out),
                      "--min-count", str(threshold), monkeypatch=monkeypatch) == 0
    result = json.loads(out.read_text())["results"]["toy"]
    assert result["dataset"]["n_items"] == 30 and 1 <= result["concepts_ever_activated"] <= 7
    assert "| toy |" in capsys.readouterr().out
    # --min-count: the NMI over the items with at least that many events, against a by-hand computation
    from sinerec.explain.concepts import item_nmi, nearest_concepts
    from sinerec.runs import load_run

    run = load_run(run_dir)
    nearest, _ = nearest_concepts(run.model.item_embeddings().detach(), run.model.prototypes.detach())
    counts = np.bincount(run.data.items, minlength=run.data.num_items + 1)[1:]
    keep = np.flatnonzero(counts >= threshold)
    assert 0 < len(keep) < 30 and sorted(counts) == sorted(events.tolist())
    by_count = result["nmi_by_min_count"][str(threshold)]
    assert by_count["n_items"] == len(keep)
    expected = item_nmi(nearest[keep], [run.data.item_categories[1:][i] for i in keep])
    assert by_count["value"] == pytest.approx(round(expected, 4), abs=1e-12)


@pytest.mark.slow
def test_interest_readouts_pairwise_cosine_by_hand():
    import torch

    pairwise_cosine = runpy.run_path(str(BENCHMARKS / "converged" / "interest_readouts.py"))["pairwise_cosine"]
    interests = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]],  # pairs: 1, 0, 0
                              [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]],  # three copies of one direction: 1
                              [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])  # pairs: -1, 0, 0
    torch.testing.assert_close(pairwise_cosine(interests), torch.tensor([1 / 3, 1.0, -1 / 3]))


def test_interest_readouts_on_a_tiny_mind_run(tmp_path, monkeypatch, capsys):
    log = planted_concepts(n_users=40, n_items=30, n_concepts=3, length=9, seed=3)
    run_dir = train_run(tmp_path / "mind", ['model="mind"', "data.max_len=6", "model_params.dim=8",
                                            "model_params.num_interests=3", "train.epochs=2", "train.lr=0.01"], log)
    out = tmp_path / "readouts.json"
    assert run_script("converged/interest_readouts.py", str(run_dir), "--out", str(out), "--draws", "1",
                      monkeypatch=monkeypatch) == 0
    doc = json.loads(out.read_text())
    r = doc["runs"][str(run_dir)]
    assert list(r) == ["max", "mean", "interest 0", "interest 1", "interest 2", "best interest per user",
                       "max, unit item vectors", "max, routing draw 0"]
    # "max" is the model's own retrieval: the evaluator's valid metrics of the run, recomputed here
    from sinerec.rescore import rescore
    from sinerec.runs import load_run

    own = rescore(load_run(run_dir), parts=["valid"])["valid"]
    assert r["max"] == {m: pytest.approx(own[m], abs=1e-12) for m in ("NDCG@10", "HR@10")}
    # the per-user best interest, chosen with the target, is at least every single interest and "max"
    for m in ("NDCG@10", "HR@10"):
        best = r["best interest per user"][m]
        assert all(best >= r[f"interest {k}"][m] - 1e-12 for k in range(3)) and best >= r["max"][m] - 1e-12
    assert doc["summary"]["max"]["NDCG@10"] == {"mean": pytest.approx(r["max"]["NDCG@10"]), "std": 0.0}
    stats = doc["statistics"]
    cosine = stats["interest_cosine"]
    assert -1 <= cosine["runs"][str(run_dir)] == cosine["mean"] <= 1 and cosine["std"] == 0.0
    assert all(0 <= stats[k]["mean"] <= 1 for k in ("head_share_retrieved", "head_share_targets"))
    # the item vectors' norm, recomputed from the run
    from sinerec.runs import load_run as load

    run = load(run_dir)
    table = run.model.item_embeddings().detach()[1:]
    assert stats["item_norm"]["mean"] == pytest.approx(float(table.norm(dim=1).mean()))
    # the targets' share of the head by hand: the 2 most frequent of the 30 items (5 %, rounded)
    from sinerec.data.splits import make_split

    counts = np.bincount(run.data.items, minlength=31)[1:]
    head = set((1 + np.argsort(-counts, kind="stable")[:2]).tolist())
    targets = make_split(run.data, run.config.protocol).valid.targets
    assert stats["head_share_targets"]["mean"] == pytest.approx(np.mean([t in head for t in targets]))
    assert "| best interest per user |" in capsys.readouterr().out
    # the routing draws were scored on a copy: the run's own retrieval is unchanged afterwards
    assert run_script("converged/interest_readouts.py", str(run_dir), "--out", str(out), "--draws", "0",
                      monkeypatch=monkeypatch) == 0
    assert json.loads(out.read_text())["runs"][str(run_dir)]["max"] == r["max"]
    # other metrics on request; one the protocol does not measure is a clear exit
    assert run_script("converged/interest_readouts.py", str(run_dir), "--out", str(out), "--draws", "0",
                      "--metrics", "HR@20", monkeypatch=monkeypatch) == 0
    again = json.loads(out.read_text())["runs"][str(run_dir)]
    assert again["max"] == {"HR@20": pytest.approx(own["HR@20"], abs=1e-12)}
    assert "| readout (valid, 1 runs) | HR@20 |" in capsys.readouterr().out
    script = BENCHMARKS / "converged" / "interest_readouts.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(run_dir), "--out", str(out), "--metrics", "NDCG@7"])
    with pytest.raises(SystemExit, match="NDCG@7 not measured"):
        runpy.run_path(str(script), run_name="__main__")
    # a one-vector model has no interests to read out: a clear exit, no traceback
    one = train_run(tmp_path / "ytb", ['model="youtubednn"', "data.max_len=6", "model_params.dim=8"], log)
    monkeypatch.setattr(sys, "argv", [str(script), str(one), "--out", str(out)])
    with pytest.raises(SystemExit, match="youtubednn retrieves with one vector"):
        runpy.run_path(str(script), run_name="__main__")


@pytest.mark.slow
def test_taobao_stages_run_every_stage_on_a_tiny_log_and_resume(tmp_path, monkeypatch):
    """benchmarks/taobao-scale/stages.py end to end on a tiny synthetic log: every stage recorded with the
    numbers its outputs give; a second call runs nothing again; the README renderer lists every stage."""
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--rows", "60000", "--items", "3000", "--users", "2000", "--epochs", "1", "--max-steps", "5",
            "--eval-queries", "50", "--factory", "IVF16,Flat", "--nprobe", "4", "--requests", "10",
            "--nmi-repeats", "2", "--work", str(work), "--label", "tiny", "--out", str(out)]
    assert run_script("taobao-scale/stages.py", *args, monkeypatch=monkeypatch) == 0
    doc = json.loads((out / "stages-tiny.json").read_text())
    stages = doc["stages"]
    assert list(stages) == ["synth", "prepare", "train", "evaluate", "export", "index", "serve", "nmi"]
    assert all(r["exit"] == 0 and r["peak_rss_gb"] > 0.05 and r["seconds"] > 0 for r in stages.values())
    assert 59_000 < stages["prepare"]["summary"]["n_interactions"] <= 60_000  # users under 5 events dropped
    assert stages["prepare"]["summary"]["n_items"] <= 3000
    assert stages["prepare"]["summary"]["split"]["name"] == "comirec"
    assert stages["train"]["evaluated"] == {"valid_queries": 50, "test_queries": 50}
    assert stages["train"]["train"]["epochs"] == 1 and stages["train"]["protocol"]["name"] == "comirec"
    assert stages["serve"]["statuses"] == {"200": 10}  # the log's own item ids, served
    assert stages["index"]["recall"]["k"] == 50 and 0 < stages["index"]["recall"]["value"] <= 1
    nmi = stages["nmi"]["result"]["settings"]
    assert (nmi["num_concepts"], nmi["num_interests"], nmi["dim"]) == (1000, 8, 64)
    dates = {k: r["date"] for k, r in stages.items()}
    assert run_script("taobao-scale/stages.py", *args, monkeypatch=monkeypatch) == 0  # resumed: nothing to do
    assert {k: r["date"] for k, r in json.loads((out / "stages-tiny.json").read_text())["stages"].items()} == dates
    # --redo runs a finished stage again from nothing (a finished run directory is replaced, not refused)
    assert run_script("taobao-scale/stages.py", *args, "--redo", "train", monkeypatch=monkeypatch) == 0
    again = json.loads((out / "stages-tiny.json").read_text())["stages"]
    assert again["train"]["exit"] == 0 and again["train"]["date"] >= dates["train"] and again["nmi"] == stages["nmi"]

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import render_readme

    monkeypatch.setattr(render_readme, "BENCH", tmp_path / "bench")
    (tmp_path / "bench" / "taobao-scale").mkdir(parents=True)
    (out).rename(tmp_path / "bench" / "taobao-scale" / "stages")
    table = render_readme.taobao_stages().splitlines()
    assert len(table) == 2 + 8 and all(line.startswith("| tiny | ") for line in table[2:])
    assert " events; " in table[3] and "(50 users)" in table[4] and "recall@50" in table[7]
    from sinerec import runtime  # the train row names the precision it trained in (auto: this machine's)

    assert f" s training, {runtime.resolve_precision('auto', 'cpu', True)}); " in table[4]


@pytest.mark.slow
@pytest.mark.realdata
def test_gpu_session_script_runs_every_step_on_a_cpu_and_packs_what_it_measured(tmp_path):
    """benchmarks/gpu_session.sh, the one command a lent GPU machine runs, smoke-tested on the CPU (SMOKE=1):
    every step exits 0 within the budget and the archive holds each step's output."""
    import subprocess
    import tarfile

    from conftest import shared_dataset

    data = shared_dataset("ml-1m").parent
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "OUT": str(out), "DATA": str(data), "PYTHON": sys.executable,
           "BUDGET": "400", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(["bash", str(BENCHMARKS / "gpu_session.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu-session.tgz", "steps.txt"]  # the device returns <= 8
    steps = (out / "steps.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in steps[:-1]] == ["gpu_check", "epoch", "speed", "converged"]
    assert all(": exit 0 after" in line for line in steps[:-1]), steps
    with tarfile.open(out / "gpu-session.tgz") as tar:
        names = set(tar.getnames())
        check = json.load(tar.extractfile("./gpu_check.json"))
        epoch = [json.loads(line) for line in tar.extractfile("./epoch-log.jsonl").read().decode().splitlines()]
    assert {"./env.txt", "./speed/speed.json", "./converged.tgz", "./epoch-metrics.json"} <= names
    assert check["device"] == "cpu" and check["timed_steps"] == 3 and check["examples_per_second"] > 0
    assert len(epoch) == 1 and epoch[0]["examples"] == 3 * 64  # one epoch of the smoke's 3 steps of 64
    # ONLY names the steps to run (a second call gives its time to the converged tables)
    only = subprocess.run(["bash", str(BENCHMARKS / "gpu_session.sh")], env={**env, "ONLY": "converged"},
                          capture_output=True, text=True, timeout=600)
    assert only.returncode == 0, only.stderr[-2000:]
    assert [line.split(":")[0] for line in (out / "steps.txt").read_text().splitlines()[:-1]] == ["converged"]


def test_converged_merge_copies_only_what_another_machine_finished(tmp_path, monkeypatch, capsys):
    import tarfile

    def run(root: Path, name: str, finished: bool, tag: str) -> None:
        folder = root / "ml1m-loo" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(tag)
        (folder.parent / f"{name}.log").write_text(f"log {tag}")
        if finished:
            (folder / "benchmark.json").write_text(json.dumps({"tag": tag}))
        else:
            (folder / "checkpoint.pt").write_text("weights")

    gpu = tmp_path / "gpu" / "benchmarks" / "converged"  # as gpu_session.sh packs it
    run(gpu, "sine-seed0", True, "gpu")  # finished here too: kept
    run(gpu, "sine-seed1", True, "gpu")  # unfinished here: replaced
    run(gpu, "mind-seed0", True, "gpu")  # not here at all: copied
    run(gpu, "mind-seed1", False, "gpu")  # unfinished there: ignored
    here = tmp_path / "here"
    run(here, "sine-seed0", True, "cpu")
    run(here, "sine-seed1", False, "cpu")
    archive = tmp_path / "converged.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "gpu" / "benchmarks", arcname="benchmarks")
    assert run_script("converged/merge.py", str(archive), "--into", str(here), "--dry-run",
                      monkeypatch=monkeypatch) == 0
    assert "would copy 2 finished run(s)" in capsys.readouterr().out
    assert not (here / "ml1m-loo" / "runs" / "mind-seed0").exists()
    assert run_script("converged/merge.py", str(archive), "--into", str(here), monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  ml1m-loo/runs/mind-seed0", "  ml1m-loo/runs/sine-seed1"]
    runs = here / "ml1m-loo" / "runs"
    assert json.loads((runs / "sine-seed0" / "benchmark.json").read_text()) == {"tag": "cpu"}
    assert json.loads((runs / "sine-seed1" / "benchmark.json").read_text()) == {"tag": "gpu"}
    assert not (runs / "sine-seed1" / "checkpoint.pt").exists()  # the unfinished run is gone, not mixed in
    assert (runs / "sine-seed1.log").read_text() == "log gpu" and (runs / "mind-seed0" / "config.json").exists()
    assert not (runs / "mind-seed1").exists()
    assert run_script("converged/merge.py", str(tmp_path / "nothing"), monkeypatch=monkeypatch) == 2
