"""The training job: the run directory it writes, the process-wide state it owns, and that the command line,
the benchmark and the test helper all train through it."""

import json
import os

import pytest
import torch
from conftest import train_run as conftest_train_run

from sinerec import job, runs
from sinerec.benchmark import run_benchmark
from sinerec.benchmark.runner import run_child, write_shared_data
from sinerec.cli import main
from sinerec.config import load_config
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import make_split
from sinerec.data.synthetic import planted_concepts
from sinerec.errors import SinerecError
from sinerec.pipeline import Prepared
from sinerec.train import Trainer

TRAIN = ["data.max_len=6", "train.batch_size=64", "train.progress=false", "train.epochs=2", "train.threads=1"]
TINY = [*TRAIN, "model_params.dim=8", "model_params.num_concepts=4", "model_params.num_interests=2"]
POP = [*TRAIN, "model=mostpop"]


def interactions():
    return planted_concepts(n_users=40, n_items=24, n_concepts=3, length=9, seed=3)


@pytest.fixture
def prepared():
    data = preprocess(interactions())
    return Prepared(data, make_split(data, load_config(overrides=TINY).protocol), 0.0)


def test_job_writes_a_complete_run_directory_that_loads(tmp_path, prepared):
    run = job.train_run(load_config(overrides=TINY), tmp_path / "run", prepared=prepared, log=lambda line: None)
    assert run.run_dir == tmp_path / "run" and not run.resumed
    assert sorted(os.listdir(run.run_dir)) == sorted(runs.LAYOUT)  # every file of the layout, nothing else
    loaded = runs.load_run(run.run_dir)
    assert loaded.metrics == json.loads(json.dumps(run.metrics))
    assert loaded.metrics["train"] == {**run.metrics["train"], "processes": 1, "epochs": 2}
    assert [r["epoch"] for r in loaded.history] == [1, 2]
    best = run.result.model.state_dict()
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, best[name]), name


def test_job_of_an_untrained_model_writes_no_log_or_checkpoint(tmp_path, prepared):
    run = job.train_run(load_config(overrides=POP), tmp_path / "pop", prepared=prepared)
    assert sorted(os.listdir(run.run_dir)) == sorted(set(runs.LAYOUT) - {runs.LOG, runs.CHECKPOINT})
    assert runs.load_run(run.run_dir).metrics["test"] == run.metrics["test"]


def test_job_refuses_a_directory_that_holds_a_run_unless_resuming(tmp_path, prepared):
    config = load_config(overrides=TINY)
    first = job.train_run(config, tmp_path / "run", prepared=prepared, log=lambda line: None)
    stamp = (tmp_path / "run" / runs.MODEL).stat().st_mtime_ns
    with pytest.raises(SinerecError, match="already holds a run"):
        job.train_run(config, tmp_path / "run", prepared=prepared, log=lambda line: None)
    assert (tmp_path / "run" / runs.MODEL).stat().st_mtime_ns == stamp  # untouched
    resumed = job.train_run(config, tmp_path / "run", resume=True, prepared=prepared, log=lambda line: None)
    assert resumed.resumed and resumed.metrics["test"] == first.metrics["test"]


def test_job_sets_the_process_wide_settings(tmp_path, prepared):
    torch.set_num_threads(2)
    config = load_config(overrides=POP)
    job.train_run(config, tmp_path / "run", prepared=prepared)
    assert torch.get_num_threads() == 1
    assert torch.equal(torch.get_rng_state(), torch.Generator().manual_seed(config.train.seed).get_state())


def test_trainer_leaves_threads_and_the_global_generator_alone(prepared):
    torch.set_num_threads(2)
    torch.manual_seed(1234)
    torch.rand(3)
    before = torch.get_rng_state()
    trainer = Trainer(load_config(overrides=TINY), prepared.data, prepared.split, log=lambda line: None)
    assert torch.get_num_threads() == 2 and torch.equal(torch.get_rng_state(), before)
    trainer.fit()
    assert torch.get_num_threads() == 2 and torch.equal(torch.get_rng_state(), before)


def test_trainer_draws_the_same_weights_whatever_the_global_generator(prepared):
    config = load_config(overrides=[*TRAIN, "model=sasrec", "model_params.dim=8", "model_params.num_heads=2",
                                     "model_params.dropout=0.5", "train.seed=4"])
    results = []
    for global_seed in (0, 99):
        torch.manual_seed(global_seed)
        trainer = Trainer(config, prepared.data, prepared.split, log=lambda line: None)
        results.append(trainer.fit())  # dropout draws from the trainer's stream too
    a, b = (r.model.state_dict() for r in results)
    for name, value in a.items():
        assert torch.equal(value, b[name]), name
    # and they are what seeding the global generator before building the model used to give
    torch.manual_seed(config.train.seed)
    from sinerec.models import build_model

    fresh = build_model(config.model, prepared.data.num_items, config.data.max_len, config.model_params)
    initial = Trainer(config, prepared.data, prepared.split).model.state_dict()
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, initial[name]), name


@pytest.fixture
def job_calls(monkeypatch):
    """Every call of the training job, by its run directory."""
    calls = []
    real = job.train_run

    def spy(config, out=None, **kwargs):
        run = real(config, out, **kwargs)
        calls.append(run.run_dir)
        return run

    monkeypatch.setattr(job, "train_run", spy)
    return calls


def test_cli_benchmark_and_test_helper_train_through_the_job(tmp_path, prepared, job_calls):
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{(u + t) % 9},{t}\n"
                                                             for u in range(12) for t in range(6)))
    assert main(["train", "--model", "mostpop", "--path", str(csv), "--format", "table", "--out",
                 str(tmp_path / "cli"), "--quiet"]) == 0
    assert job_calls == [tmp_path / "cli"]

    run_benchmark(["mostpop"], out_dir=tmp_path / "bench", seeds=[0], prepared=prepared, isolate=False,
                  overrides=["train.threads=1"], log=lambda line: None)
    assert job_calls[-1] == tmp_path / "bench" / "runs" / "mostpop-seed0"

    # the body of an isolated benchmark run (a child process), here in this process
    config = load_config(overrides=POP)
    spec = {"config": config.to_dict(), "data_dir": str(write_shared_data(tmp_path / "data", prepared)),
            "run_dir": str(tmp_path / "child"), "dataset_fingerprint": prepared.data.fingerprint(),
            "split_fingerprint": prepared.split.fingerprint}
    assert run_child(json.dumps(spec)) == 0
    assert job_calls[-1] == tmp_path / "child" and (tmp_path / "child" / "benchmark.json").exists()

    conftest_train_run(tmp_path / "helper", ["model=mostpop"], interactions())
    assert job_calls[-1] == tmp_path / "helper" and len(job_calls) == 4


def _job_worker(rank: int, port: int, folder: str) -> None:
    """One of two torchrun-like ranks: the job with no --out, in ``folder``; the result saved per rank."""
    import traceback

    from sinerec import distributed

    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                          LOCAL_RANK=str(rank))
        os.chdir(folder)  # the default run directory is runs/MODEL-DATASET-TIME under the working directory
        ctx = distributed.init("cpu", timeout_s=60)
        data = preprocess(interactions())
        config = load_config(overrides=TINY)
        prepared = Prepared(data, make_split(data, config.protocol), 0.0)
        run = job.train_run(config, prepared=prepared, log=lambda line: None, dist=ctx)
        torch.save({"run_dir": str(run.run_dir), "metrics": run.metrics}, f"rank{rank}.pt")
        distributed.cleanup(ctx)
    except BaseException:
        with open(os.path.join(folder, f"rank{rank}.err"), "w") as fh:
            fh.write(traceback.format_exc())
        raise


@pytest.mark.slow
@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with the gloo backend is unavailable")
def test_job_under_two_processes_names_one_run_and_only_rank_0_writes(tmp_path):
    import multiprocessing as mp

    from conftest import free_port

    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_job_worker, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        if p.is_alive():
            p.terminate()
            p.join()
    errors = [f.read_text() for f in sorted(tmp_path.glob("*.err"))]
    assert not errors and all(p.exitcode == 0 for p in procs), "\n".join(errors) or [p.exitcode for p in procs]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"]  # rank 0's clock named the run for both
    run_dir = tmp_path / ranks[0]["run_dir"]
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("sine-synthetic-concepts-")
    assert sorted(os.listdir(run_dir)) == sorted(runs.LAYOUT)
    assert len((run_dir / runs.LOG).read_text().splitlines()) == 2  # two epochs, written once
    written = json.loads((run_dir / runs.METRICS).read_text())
    assert written["train"]["processes"] == 2
    assert written["test"] == ranks[0]["metrics"]["test"] == ranks[1]["metrics"]["test"]


@pytest.mark.parametrize(("amp", "precision"), [("off", "float32"), ("bf16", "bf16")])
def test_metrics_record_the_precision_the_run_trained_in(tmp_path, prepared, amp, precision):
    # train.amp = "auto" resolves per machine (bf16 on CUDA): the run says what it used
    run = job.train_run(load_config(overrides=[*TINY, f"train.amp={amp}"]), tmp_path / "run", prepared=prepared,
                        log=lambda line: None)
    assert run.metrics["train"]["precision"] == precision
    assert runs.load_run(run.run_dir).metrics["train"]["precision"] == precision
