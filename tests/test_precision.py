"""Training precision: ``train.amp = "auto"`` is bf16 autocast on CPUs with bf16 in hardware (and on CUDA),
float32 elsewhere; a run never mixes precisions: resuming and the benchmark's reuse compare the precision a run
trained in, also for runs saved before runs named it."""

import json

import pytest
import torch

from sinerec import job, runs, runtime
from sinerec.benchmark import run_benchmark
from sinerec.config import load_config
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import make_split
from sinerec.data.synthetic import planted_concepts
from sinerec.errors import SinerecError
from sinerec.pipeline import Prepared
from sinerec.runtime import legacy_precision, resolve_precision
from sinerec.storage import load_torch, save_torch
from sinerec.train import Trainer

TINY = ["data.max_len=6", "train.batch_size=64", "train.progress=false", "train.epochs=1", "train.threads=1",
        "model_params.dim=8", "model_params.num_concepts=4", "model_params.num_interests=2"]
FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f{extra} avx512vl\nbogomips\t: 4000\n"


@pytest.fixture
def prepared():
    data = preprocess(planted_concepts(n_users=40, n_items=24, n_concepts=3, length=9, seed=3))
    return Prepared(data, make_split(data, load_config(overrides=TINY).protocol), 0.0)


def cpu(monkeypatch, bf16: bool) -> None:
    """Pretend this CPU has (or lacks) bf16 in hardware."""
    monkeypatch.setattr(runtime, "native_bf16", lambda: bf16)


@pytest.mark.parametrize(("extra", "native"), [("", False), (" avx512_bf16", True), (" amx_bf16 amx_tile", True),
                                               (" avx512_bf16x", False)])
def test_native_bf16_reads_the_cpu_flags(tmp_path, extra, native):
    path = tmp_path / "cpuinfo"
    path.write_text(FLAGS.format(extra=extra) * 2)
    assert runtime.native_bf16(path) is native
    assert runtime.native_bf16(tmp_path / "missing") is False  # not Linux: no claim of hardware bf16


@pytest.mark.parametrize(("amp", "device", "native", "model_gains", "expected"), [
    ("auto", "cpu", True, True, "bf16"), ("auto", "cpu", False, True, "float32"),
    ("auto", "cpu", True, False, "float32"),  # a model not measured to gain from it
    ("auto", "cuda", False, False, "bf16"), ("off", "cpu", True, True, "float32"),
    ("off", "cuda", True, True, "float32"),
    ("bf16", "cpu", False, False, "bf16"),
])
def test_auto_trains_in_bf16_where_the_hardware_has_it_and_the_model_gains(monkeypatch, amp, device, native,
                                                                          model_gains, expected):
    cpu(monkeypatch, native)
    assert resolve_precision(amp, device, model_gains) == expected


def test_only_sine_is_flagged_to_train_in_bf16_on_a_cpu_by_default():
    from sinerec.models import MODELS, model_class

    assert [name for name in MODELS if model_class(name).cpu_bf16] == ["sine"]


def test_runs_before_the_rule_changed_read_auto_as_bf16_on_cuda_only():
    assert [legacy_precision(a, d) for a, d in [("auto", "cpu"), ("auto", "cuda:0"), ("auto", None),
                                                ("off", "cuda"), ("bf16", "cpu")]] == \
        ["float32", "bf16", "float32", "float32", "bf16"]


def test_the_trainer_autocasts_as_resolved_and_the_run_says_so(monkeypatch, tmp_path, prepared):
    cpu(monkeypatch, True)
    seen = []
    real = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kw):
        seen.append((device_type, dtype, enabled))
        return real(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(torch, "autocast", spy)
    run = job.train_run(load_config(overrides=TINY), tmp_path / "run", prepared=prepared, log=lambda line: None)
    assert run.metrics["train"]["precision"] == "bf16"
    assert seen and set(seen) == {("cpu", torch.bfloat16, True)}
    assert load_torch(tmp_path / "run" / runs.CHECKPOINT)["precision"] == "bf16"
    # parameters stay float32 under autocast
    assert {p.dtype for p in run.result.model.parameters()} == {torch.float32}


def test_resume_refuses_to_continue_a_run_in_another_precision(monkeypatch, tmp_path, prepared):
    cpu(monkeypatch, False)
    out = tmp_path / "run"
    job.train_run(load_config(overrides=TINY), out, prepared=prepared, log=lambda line: None)  # auto: float32
    cpu(monkeypatch, True)  # the same run, resumed where auto means bf16
    more = [*TINY, "train.epochs=2"]
    with pytest.raises(SinerecError, match=r"trained in float32.*train.amp = 'auto' trains in bf16 here; set "
                                           r"train.amp = 'off' \(--set train.amp=off\)"):
        job.train_run(load_config(overrides=more), out, resume=True, prepared=prepared, log=lambda line: None)
    # a checkpoint written before checkpoints named their precision: auto on a CPU then meant float32
    state = load_torch(out / runs.CHECKPOINT)
    del state["precision"]
    save_torch(out / runs.CHECKPOINT, state)
    with pytest.raises(SinerecError, match="trained in float32"):
        job.train_run(load_config(overrides=more), out, resume=True, prepared=prepared, log=lambda line: None)
    run = job.train_run(load_config(overrides=[*more, "train.amp=off"]), out, resume=True, prepared=prepared,
                        log=lambda line: None)
    assert run.resumed and run.metrics["train"]["precision"] == "float32" and run.metrics["train"]["epochs"] == 2


def test_benchmark_reuses_a_finished_run_by_the_precision_it_trained_in(monkeypatch, tmp_path, prepared):
    cpu(monkeypatch, False)
    run = dict(out_dir=tmp_path, seeds=[0], prepared=prepared, overrides=TINY, isolate=False, log=lambda line: None)
    first = run_benchmark(["sine"], **run).document
    assert first["runs"][0]["precision"] == "float32"
    record_path = tmp_path / "runs" / "sine-seed0" / "benchmark.json"
    record = json.loads(record_path.read_text())
    del record["precision"]  # a record written before records named it
    record_path.write_text(json.dumps(record))
    stamp = record_path.stat().st_mtime_ns
    cpu(monkeypatch, True)  # now auto means bf16: the float32 run is neither reused nor mixed in silently
    with pytest.raises(SinerecError, match=r"trained in float32, and train.amp = 'auto' trains in bf16 here; "
                                           r"add --set train.amp=off to reuse it"):
        run_benchmark(["sine"], **run)
    again = run_benchmark(["sine"], **{**run, "overrides": [*TINY, "train.amp=off"]}).document
    assert record_path.stat().st_mtime_ns == stamp and again["runs"][0]["test"] == first["runs"][0]["test"]
    with pytest.raises(SinerecError, match="trained in float32.*train.amp = 'bf16'"):
        run_benchmark(["sine"], **{**run, "overrides": [*TINY, "train.amp=bf16"]})


class Killed(BaseException):
    """Stands for a SIGKILL after a checkpoint."""


def unfinished_float32_run(monkeypatch, run: dict, old_checkpoint: bool) -> list:
    """Kill the benchmark's run after its first checkpoint (float32 under auto: no bf16 in hardware), with the
    checkpoint as older versions wrote it (no precision) when ``old_checkpoint``; then record the epochs the
    trainer trains from now on, with their precision, into the list returned."""
    cpu(monkeypatch, False)
    save = runs.save_checkpoint

    def save_then_die(run_dir, state):
        save(run_dir, {k: v for k, v in state.items() if not (old_checkpoint and k == "precision")})
        raise Killed

    monkeypatch.setattr(runs, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run_benchmark(["sine"], **run)
    monkeypatch.setattr(runs, "save_checkpoint", save)
    trained: list = []
    train_epoch = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch, *a, **k: trained.append((epoch, self.precision))
                        or train_epoch(self, epoch, *a, **k))
    return trained


TWO = [*TINY, "train.epochs=2"]


def test_benchmark_continues_an_unfinished_run_only_in_its_own_precision(monkeypatch, tmp_path, prepared):
    run = dict(out_dir=tmp_path, seeds=[0], prepared=prepared, overrides=TWO, isolate=False, log=lambda line: None)
    trained = unfinished_float32_run(monkeypatch, run, old_checkpoint=True)
    cpu(monkeypatch, True)
    # train.amp=off names the float32 the run trained in under auto: it continues with epoch 2 only
    doc = run_benchmark(["sine"], **{**run, "overrides": [*TWO, "train.amp=off"]}).document
    assert doc["runs"] and doc["runs"][0].get("error") is None, (doc["failed"], doc.get("pending"))
    assert trained == [(1, "float32")] and doc["runs"][0]["resumed"] and doc["runs"][0]["precision"] == "float32"


def test_benchmark_starts_over_an_unfinished_run_of_another_precision(monkeypatch, tmp_path, prepared):
    run = dict(out_dir=tmp_path, seeds=[0], prepared=prepared, overrides=TWO, isolate=False, log=lambda line: None)
    trained = unfinished_float32_run(monkeypatch, run, old_checkpoint=False)
    doc = run_benchmark(["sine"], **{**run, "overrides": [*TWO, "train.amp=bf16"]}).document
    assert trained == [(0, "bf16"), (1, "bf16")] and not doc["runs"][0]["resumed"]


@pytest.mark.parametrize(("model", "native", "amp", "said"), [
    ("sine", True, "auto", "bf16 autocast (train.amp = 'auto')"), ("sine", True, "off", "float32 (train.amp = 'off')"),
    ("sine", False, "auto", "float32 (train.amp = 'auto')"), ("sasrec", True, "auto", "float32 (train.amp = 'auto')"),
])
def test_sinerec_train_says_the_precision_it_trains_in(monkeypatch, tmp_path, capsys, model, native, amp, said):
    import re

    from sinerec.cli import main

    cpu(monkeypatch, native)
    assert main(["train", "--model", model, "--out", str(tmp_path / "run"), "--set", f"train.amp={amp}",
                 "--epochs", "1", "--set", "train.max_steps_per_epoch=1", "--set", "train.threads=1"]) == 0
    assert re.search(rf"model: {model} \([\d,]+ parameters\) on cpu, {re.escape(said)}\n", capsys.readouterr().out)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["precision"] == \
        ("bf16" if said.startswith("bf16") else "float32")
