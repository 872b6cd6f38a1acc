"""sinerec benchmark: shipped settings, the aggregation over seeds, the written files, isolation and resuming."""

import csv
import json
import statistics

import pytest

from sinerec.benchmark import model_config, run_benchmark, shipped_config_path, split_overrides
from sinerec.cli import main
from sinerec.config import load_config, read_config_file
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import ProtocolConfig, make_split
from sinerec.data.synthetic import planted_concepts
from sinerec.errors import ConfigError, SinerecError
from sinerec.models import MODELS, build_model
from sinerec.pipeline import Prepared
from sinerec.train import Trainer

# Tiny models with odd, distinct sizes, a few steps each; one torch thread (two threads on two busy cores are
# several times slower for models this small).
TINY = ["data.max_len=7", "train.epochs=2", "train.batch_size=64", "train.threads=1",
        "sasrec:model_params.dim=14", "sasrec:model_params.num_heads=2",
        "comirec-sa:model_params.dim=13", "comirec-sa:model_params.num_interests=3"]
MODELS3 = ["mostpop", "sasrec", "comirec-sa"]


@pytest.fixture(scope="module")
def prepared():
    data = preprocess(planted_concepts(n_users=90, n_items=39, n_concepts=3, length=13, seed=1))
    return Prepared(data, make_split(data, ProtocolConfig(name="loo")), 0.0)


@pytest.mark.parametrize("model", list(MODELS))
def test_shipped_settings_load_and_build(model):
    path = shipped_config_path(model)
    # only the model's own settings: the data and the split are the benchmark's, the same for every model
    assert set(read_config_file(path)) <= {"model", "model_params", "train"}
    config = load_config(file=path)
    assert config.model == model
    build_model(model, 13, 7, config.model_params)


def test_shipped_settings_are_the_papers():
    sine = load_config(file=shipped_config_path("sine"))
    p = sine.model_params
    assert (p.dim, p.num_interests, p.num_concepts, p.cov_weight, p.tau) == (128, 4, 50, 0.5, 0.1)
    sasrec = load_config(file=shipped_config_path("sasrec"))
    assert (sasrec.model_params.dim, sasrec.model_params.num_blocks, sasrec.model_params.dropout) == (50, 2, 0.2)
    for config in (sine, sasrec, load_config(file=shipped_config_path("comirec-dr"))):
        assert (config.train.lr, config.train.batch_size) == (1e-3, 128)
    assert load_config(file=shipped_config_path("comirec-sa")).model_params.dim == 64


def test_overrides_for_every_model_and_for_one():
    common, scoped = split_overrides(["train.lr=0.01", "sasrec:model_params.dropout=0.5", "data.sep=a:b"])
    assert common == ["train.lr=0.01", "data.sep=a:b"] and scoped == {"sasrec": ["model_params.dropout=0.5"]}
    with pytest.raises(ConfigError, match="sasrek"):
        split_overrides(["sasrek:model_params.dim=3"])
    with pytest.raises(ConfigError, match="models"):
        split_overrides(["model=sine"])
    sasrec = model_config("sasrec", 5, overrides=["train.lr=0.01", "sasrec:model_params.dropout=0.5"])
    gru = model_config("gru4rec", 5, overrides=["train.lr=0.01", "sasrec:model_params.dropout=0.5"])
    assert (sasrec.model_params.dropout, gru.model_params.dropout) == (0.5, 0.5)  # gru4rec's own default
    assert sasrec.train.lr == gru.train.lr == 0.01 and sasrec.train.seed == 5


def test_models_must_share_the_data(prepared, tmp_path):
    with pytest.raises(ConfigError, match="data.min_user_count"):
        run_benchmark(["mostpop", "sasrec"], out_dir=tmp_path, seeds=[0], prepared=prepared, isolate=False,
                      overrides=["sasrec:data.min_user_count=3"], log=lambda line: None)


@pytest.mark.slow
def test_benchmark_in_process_aggregates_seeds(prepared, tmp_path):
    result = run_benchmark(MODELS3, out_dir=tmp_path, seeds=[0, 1], prepared=prepared, overrides=TINY,
                           isolate=False, log=lambda line: None)
    names = ["results.json", "results.csv", "results.md", "chart.png"]
    assert all((tmp_path / n).is_file() for n in names), [n for n in names if not (tmp_path / n).exists()]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["failed"] == [] and doc["pending"] == [] and len(doc["runs"]) == 6
    assert doc["dataset"]["fingerprint"] == prepared.data.fingerprint()
    assert doc["protocol"]["fingerprint"] == prepared.split.fingerprint
    for model in MODELS3:
        # recompute from each run's own metrics.json, written by the trainer
        runs = [json.loads((tmp_path / "runs" / f"{model}-seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
        for metric in ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR@20"):
            values = [r["test"][metric] for r in runs]
            got = doc["summary"][model]["test"][metric]
            assert got["mean"] == pytest.approx((values[0] + values[1]) / 2, abs=1e-12)
            assert got["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5, abs=1e-12)  # n - 1
        assert doc["summary"][model]["n_seeds"] == 2
    means = [doc["summary"][m]["test"]["NDCG@10"]["mean"] for m in doc["ranking"]]
    assert sorted(doc["ranking"]) == sorted(MODELS3) and means == sorted(means, reverse=True)
    assert doc["summary"]["mostpop"]["examples_per_second"] is None
    sasrec_runs = [r for r in doc["runs"] if r["model"] == "sasrec"]
    assert doc["summary"]["sasrec"]["examples_per_second"]["mean"] == \
        pytest.approx(statistics.fmean(r["examples_per_second"] for r in sasrec_runs))
    assert all(r["epochs"] == 2 for r in sasrec_runs)

    md = (tmp_path / "results.md").read_text()
    main_table = md.split("\n| # |", 1)[1].split("\n\n", 1)[0]  # the results table (others follow it)
    rows = [line for line in main_table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[1] for row in rows] == doc["ranking"]
    best = 100 * doc["summary"][doc["ranking"][0]]["test"]["NDCG@10"]["mean"]
    assert f"**{best:.2f}**" in rows[0]
    assert prepared.split.fingerprint in md and prepared.data.fingerprint() in md
    with open(tmp_path / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["model"] for r in table] == doc["ranking"]
    assert float(table[0]["test_NDCG@10_mean"]) == pytest.approx(best / 100)
    for model in MODELS3:
        assert model in result.table


@pytest.mark.slow
def test_isolated_runs_measure_memory_and_resume(prepared, tmp_path):
    # a comirec split with a non-default user shuffle: the child process must rebuild exactly this split
    comirec = Prepared(prepared.data, make_split(prepared.data, ProtocolConfig(name="comirec", seed=7)), 0.0)
    run = dict(out_dir=tmp_path, seeds=[3], prepared=comirec, overrides=TINY, log=lambda line: None)
    first = run_benchmark(["mostpop"], **run)
    assert first.document["failed"] == [] and first.document["protocol"]["seed"] == 7
    record = first.document["runs"][0]
    assert record["split_fingerprint"] == comirec.split.fingerprint
    assert record["memory"] == "process" and record["peak_rss_bytes"] > 50 * 2**20  # at least torch's own
    assert (tmp_path / "data" / "sequences.npz").exists()  # read once, shared by the runs
    stamp = (tmp_path / "runs" / "mostpop-seed3" / "benchmark.json").stat().st_mtime_ns
    again = run_benchmark(["mostpop"], **run)  # finished: reused, not redone
    assert (tmp_path / "runs" / "mostpop-seed3" / "benchmark.json").stat().st_mtime_ns == stamp
    assert again.document["summary"] == first.document["summary"]
    # a run saved by an earlier version, before a setting existed, ran with its default: still reused
    config_path = tmp_path / "runs" / "mostpop-seed3" / "config.json"
    saved = json.loads(config_path.read_text())
    del saved["train"]["optimizer"]
    config_path.write_text(json.dumps(saved))
    run_benchmark(["mostpop"], **run)
    assert (tmp_path / "runs" / "mostpop-seed3" / "benchmark.json").stat().st_mtime_ns == stamp
    with pytest.raises(SinerecError, match="other settings"):
        run_benchmark(["mostpop"], **{**run, "overrides": TINY + ["eval.batch_size=7"]})


@pytest.mark.slow
def test_cli_benchmark(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--models", "mostpop", "--seeds", "4", "--quick", "--out", str(out),
                 "--set", "eval.ks=10,50"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert doc["command"] == (f"sinerec benchmark --models mostpop --protocol loo --seeds 4 --out {out} --quick "
                              "--set eval.ks=10,50")
    assert doc["dataset"]["name"] == "ml-latest-small" and "mostpop" in printed and str(out / "results.md") in printed
    # MostPop's exact numbers on the built-in split (tests/test_train.py pins the same), in every output
    assert doc["dataset"]["fingerprint"] == "c70c4b936a3ecbc7"
    assert doc["protocol"]["fingerprint"] == "0f5d89bf6f79bc79"
    assert doc["ranking"] == ["mostpop"] and doc["seeds"] == [4]
    test = doc["summary"]["mostpop"]["test"]
    assert set(test) == {f"{m}@{k}" for m in ("HR", "Recall", "NDCG", "MRR") for k in (10, 50)}
    assert test["HR@10"] == {"mean": 25 / 610, "std": 0.0} and test["HR@50"] == {"mean": 66 / 610, "std": 0.0}
    assert test["NDCG@10"]["mean"] == pytest.approx(0.018809666286387743, rel=1e-12)
    assert [r["status"] for r in doc["runs"]] == ["done"] and doc["runs"][0]["seed"] == 4
    table = (out / "results.md").read_text()
    assert "| 1 | mostpop | **4.10** | **10.82** | **1.88** | **3.37** | - | - | - |" in table
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1,mostpop,1,0.040983606557377046,0.0,0.10819672131147541,0.0,")
    assert "mostpop  4.10*  10.82*    1.88*    3.37*" in printed


TRAIN_EPOCH = Trainer.train_epoch


class Killed(BaseException):
    """Stands for a SIGKILL: not an Exception, so nothing on the way up handles it."""


@pytest.mark.slow
def test_unfinished_run_continues_from_its_checkpoint(prepared, tmp_path, monkeypatch):
    """A run killed after epoch 1 of 2 (its checkpoint written) continues from that checkpoint: the rerun
    trains only epoch 2 and ends exactly where an uninterrupted run ends."""
    from sinerec import runs

    straight = run_benchmark(["sasrec"], out_dir=tmp_path / "straight", seeds=[2], prepared=prepared,
                             overrides=TINY, isolate=False, log=lambda line: None).document
    run = dict(out_dir=tmp_path / "b", seeds=[2], prepared=prepared, overrides=TINY, isolate=False,
               log=lambda line: None)
    save = runs.save_checkpoint

    def save_then_die(run_dir, state):
        save(run_dir, state)
        if state["epoch"] == 1:
            raise Killed

    monkeypatch.setattr(runs, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run_benchmark(["sasrec"], **run)
    monkeypatch.setattr(runs, "save_checkpoint", save)
    run_dir = tmp_path / "b" / "runs" / "sasrec-seed2"
    assert not (run_dir / "benchmark.json").exists()
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 1  # killed after epoch 1 of 2
    trained = []
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch, *a, **k: trained.append(epoch)
                        or TRAIN_EPOCH(self, epoch, *a, **k))
    again = run_benchmark(["sasrec"], **run).document
    assert trained == [1]  # only the second epoch (0-based 1) was trained again
    assert again["runs"][0]["resumed"] and not straight["runs"][0]["resumed"]
    assert again["runs"][0]["epochs"] == 2
    assert again["runs"][0]["test"] == straight["runs"][0]["test"]
    assert again["runs"][0]["valid"] == straight["runs"][0]["valid"]
    # what the table cost counts both sittings' epochs: the killed one's first and this one's second
    epochs = [json.loads(line)["seconds"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(epochs) == 2 and again["runs"][0]["train_seconds"] == pytest.approx(sum(epochs), abs=1e-3)
    assert again["compute"] == {"runs": 1, "reused": 0, "train_seconds": round(again["runs"][0]["train_seconds"], 1)}
    assert "- compute: 1 finished runs trained for " in (tmp_path / "b" / "results.md").read_text()


def test_resumed_benchmark_keeps_the_measured_date_and_wall_time(prepared, tmp_path):
    run = dict(out_dir=tmp_path, seeds=[0], prepared=prepared, overrides=TINY, isolate=False, log=lambda line: None)
    run_benchmark(["mostpop"], **run)
    path = tmp_path / "results.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "wall_seconds": 1000.0, "date": "2020-01-02 03:04 UTC"}))
    again = run_benchmark(["mostpop"], **run).document  # every run reused: only the tables are written again
    assert again["date"] == "2020-01-02 03:04 UTC" and 1000.0 <= again["wall_seconds"] < 1060.0
    assert "2020-01-02 03:04 UTC; wall time 16m 4" in (tmp_path / "results.md").read_text()


def test_report_only_tabulates_the_finished_runs_and_trains_nothing(prepared, tmp_path, monkeypatch):
    """Two invocations training other models into one folder each write their own models' table; a report-only
    pass writes the whole table from what has finished, lists the rest as not run yet and trains nothing."""
    run = dict(out_dir=tmp_path, seeds=[0], prepared=prepared, overrides=TINY, isolate=False, log=lambda line: None)
    with pytest.raises(ConfigError, match="report only: no run of these models.*has finished"):
        run_benchmark(["mostpop"], report_only=True, **run)
    assert not (tmp_path / "results.json").exists()
    run_benchmark(["mostpop"], **run)
    sasrec = run_benchmark(["sasrec"], **run).document  # the second invocation's table has sasrec alone
    assert [r["model"] for r in sasrec["runs"]] == ["sasrec"]
    trained = []
    monkeypatch.setattr(Trainer, "train_epoch",
                        lambda self, *a, **k: trained.append(self) or TRAIN_EPOCH(self, *a, **k))
    lines = []
    doc = run_benchmark(["mostpop", "sasrec", "comirec-sa"], report_only=True,
                        **{**run, "log": lines.append}).document
    assert trained == [] and not (tmp_path / "runs" / "comirec-sa-seed0").exists()
    assert {r["model"]: r["test"] for r in doc["runs"]}["sasrec"] == sasrec["runs"][0]["test"]
    assert doc["pending"] == ["comirec-sa-seed0"] and "wall_seconds" in sasrec and "wall_seconds" in doc
    assert doc["wall_seconds"] == sasrec["wall_seconds"]  # a report adds no time
    assert any("report only: 2 of 3 runs finished, 1 listed as not run yet" in line for line in lines)
    table = (tmp_path / "results.md").read_text()
    assert "| mostpop |" in table and "| sasrec |" in table and "not run yet: comirec-sa-seed0" in table


def test_reuse_copies_only_runs_with_the_same_settings(prepared, tmp_path, monkeypatch):
    """--reuse: a run another benchmark finished with the very same settings and data is copied in, trained by
    nobody, with its record and metrics; a run of the same name with other settings is trained here instead."""
    quiet = dict(seeds=[0], prepared=prepared, isolate=False, log=lambda line: None)
    first = run_benchmark(["sasrec", "comirec-sa"], out_dir=tmp_path / "main", overrides=TINY, **quiet).document
    (tmp_path / "main" / "runs" / "sasrec-seed0" / "checkpoint.pt").write_bytes(b"not copied")
    trained = []
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch, *a, **k: trained.append(type(self.model).__name__)
                        or TRAIN_EPOCH(self, epoch, *a, **k))
    smaller = [*TINY, "sasrec:model_params.dim=12"]  # SASRec differs, ComiRec-SA is the same run
    # a half-trained run of the shared model is replaced by the finished copy
    (tmp_path / "d12" / "runs" / "comirec-sa-seed0").mkdir(parents=True)
    (tmp_path / "d12" / "runs" / "comirec-sa-seed0" / "log.jsonl").write_text("{}\n")
    lines = []
    doc = run_benchmark(["sasrec", "comirec-sa"], out_dir=tmp_path / "d12", overrides=smaller,
                        reuse=[tmp_path / "main"], **{**quiet, "log": lines.append}).document
    assert trained == ["SASRec", "SASRec"]  # two epochs of SASRec at D = 12, none of ComiRec-SA
    source = tmp_path / "main" / "runs" / "comirec-sa-seed0"
    copied = {r["model"]: r for r in doc["runs"]}["comirec-sa"]
    assert copied["reused_from"] == str(source) and "reused_from" not in {r["model"]: r for r in doc["runs"]}["sasrec"]
    assert copied["test"] == {r["model"]: r for r in first["runs"]}["comirec-sa"]["test"]
    target = tmp_path / "d12" / "runs" / "comirec-sa-seed0"
    assert (target / "log.jsonl").read_text() == (source / "log.jsonl").read_text()
    assert (target / "model.pt").exists() and not (target / "checkpoint.pt").exists()
    assert json.loads((target / "benchmark.json").read_text())["reused_from"] == str(source)
    assert doc["compute"]["runs"] == 1 and doc["compute"]["reused"] == 1
    sasrec = {r["model"]: r for r in doc["runs"]}["sasrec"]
    assert doc["compute"]["train_seconds"] == round(sasrec["train_seconds"], 1)  # the copy cost nothing here
    assert any("1 finished runs with the same settings and data copied from" in line and "comirec-sa-seed0" in line
               for line in lines)
    assert "1 more copied from another benchmark" in (tmp_path / "d12" / "results.md").read_text()
    # rerun: the copy is now a finished run of this folder, nothing is trained or copied again
    trained.clear()
    again = run_benchmark(["sasrec", "comirec-sa"], out_dir=tmp_path / "d12", overrides=smaller,
                          reuse=[tmp_path / "main"], **quiet).document
    assert trained == [] and again["summary"] == doc["summary"]
    with pytest.raises(ConfigError, match="not a benchmark folder"):
        run_benchmark(["mostpop"], out_dir=tmp_path / "x", reuse=[tmp_path / "nowhere"], **quiet)


def _summary(hr10, hr10_std, ndcg10, ndcg10_std):
    return {"n_seeds": 3, "test": {"HR@10": {"mean": hr10, "std": hr10_std},
                                   "NDCG@10": {"mean": ndcg10, "std": ndcg10_std}},
            "epochs": None, "best_epoch": None, "train_seconds": None, "examples_per_second": None,
            "peak_rss_bytes": None}


def test_versus_sine_by_hand():
    from sinerec.benchmark.report import table_rows, versus, versus_text

    summary = {"sasrec": _summary(0.25, 0.01, 0.101, 0.002), "gru4rec": _summary(0.22, 0.0, 0.09, 0.01),
               "sine": _summary(0.20, 0.01, 0.10, 0.005), "mostpop": _summary(0.04, 0.0, 0.02, 0.0)}
    doc = {"protocol": {"name": "loo"}, "sort_by": "NDCG@10", "summary": summary,
           "ranking": ["sasrec", "sine", "gru4rec", "mostpop"], "seeds": [0, 1, 2], "runs": [], "failed": [],
           "pending": []}
    v = versus(doc)
    assert v["metrics"] == ["HR@10", "NDCG@10"]
    assert v["relative"]["sasrec"]["HR@10"] == pytest.approx(0.25)
    assert v["relative"]["mostpop"]["NDCG@10"] == pytest.approx(-0.8)
    # HR@10: sasrec gains 0.05 > 0.01 + 0.01, gru4rec 0.02 > 0 + 0.01; NDCG@10: sasrec 0.001 < 0.002 + 0.005
    assert [(b["model"], round(b["relative"], 6), b["within_spread"]) for b in v["beaten_by"]["HR@10"]] == \
        [("sasrec", 0.25, False), ("gru4rec", 0.1, False)]
    assert [(b["model"], round(b["relative"], 6), b["within_spread"]) for b in v["beaten_by"]["NDCG@10"]] == \
        [("sasrec", 0.01, True)]
    doc["versus"] = v
    assert versus_text(doc) == ("Where sine loses (test means, relative to sine's): HR@10 to sasrec +25.0%, "
                                "gru4rec +10.0%; NDCG@10 to sasrec +1.0% (within the seeds' spread).")
    columns, rows = table_rows(doc, markdown=True, ceiling={})
    col = columns.index("NDCG@10 vs sine")
    assert [r[col] for r in rows] == ["+1.0%", "-", "-10.0%", "-80.0%"]

    summary["sine"] = _summary(0.30, 0.0, 0.2, 0.0)  # now the best everywhere
    assert versus_text({**doc, "versus": versus(doc)}) == "sine has the best mean of every metric in the table."
    assert versus({**doc, "summary": {"sine": summary["sine"]}, "ranking": ["sine"]}) is None  # nobody to compare
    no_sine = {k: summary[k] for k in ("sasrec", "mostpop")}
    assert versus({**doc, "summary": no_sine, "ranking": ["sasrec", "mostpop"]}) is None


@pytest.mark.slow
def test_two_jobs_at_a_time_give_the_one_job_results(prepared, tmp_path):
    """--jobs 2: two runs, each in its own process, at the same time; the same numbers as one in-process job."""
    run = dict(seeds=[0], prepared=prepared, overrides=TINY, log=lambda line: None)
    two = run_benchmark(["mostpop", "sasrec"], out_dir=tmp_path / "two", jobs=2, threads=1, **run).document
    one = run_benchmark(["mostpop", "sasrec"], out_dir=tmp_path / "one", isolate=False, **run).document
    assert two["jobs"] == 2 and two["failed"] == [] and two["pending"] == []
    assert sorted((r["model"], r["status"], r["memory"]) for r in two["runs"]) == \
        [("mostpop", "done", "process"), ("sasrec", "done", "process")]
    for a, b in zip(sorted(two["runs"], key=lambda r: r["model"]), sorted(one["runs"], key=lambda r: r["model"]),
                    strict=True):
        assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["epochs"] == b["epochs"] == \
            (0 if a["model"] == "mostpop" else 2)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["caser", "sine"])
def test_train_reproduces_the_benchmark_row(model, tmp_path):
    """`sinerec train --model X` resolves X's settings as `sinerec benchmark` does (issue 12 item 3): the same
    seed, data and threads give the benchmark run's metrics exactly, not just within the seeds' spread."""
    short = ["--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=5"]
    bench = tmp_path / "bench"
    assert main(["benchmark", "--models", model, "--seeds", "3", "--threads", "1", "--out", str(bench), *short]) == 0
    row = json.loads((bench / "results.json").read_text())["runs"][0]
    run = tmp_path / "run"
    assert main(["train", "--model", model, "--seed", "3", "--threads", "1", "--out", str(run), *short,
                 "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"]["fingerprint"] == row["dataset_fingerprint"]
    assert metrics["protocol"]["fingerprint"] == row["split_fingerprint"]
    assert metrics["valid"] == row["valid"] and metrics["test"] == row["test"]
    assert metrics["test"]["NDCG@10"] > 0


@pytest.mark.parametrize(("order", "expected"), [
    ("seed", ["mostpop-seed0", "sasrec-seed0", "mostpop-seed1", "sasrec-seed1"]),
    ("model", ["mostpop-seed0", "mostpop-seed1", "sasrec-seed0", "sasrec-seed1"]),
])
def test_benchmark_order_chooses_which_runs_go_first(prepared, tmp_path, monkeypatch, order, expected):
    from sinerec.benchmark import run as bench_run

    queued = []
    monkeypatch.setattr(bench_run, "run_all", lambda specs, *a, **k: queued.extend(s.run_dir.name for s in specs))
    doc = run_benchmark(["mostpop", "sasrec"], out_dir=tmp_path, seeds=[0, 1], prepared=prepared, overrides=TINY,
                        isolate=False, order=order, log=lambda line: None).document
    assert queued == expected and doc["pending"] == sorted(expected)
    with pytest.raises(ConfigError, match="order must be 'seed' or 'model', got 'random'"):
        run_benchmark(["mostpop"], out_dir=tmp_path, prepared=prepared, isolate=False, order="random")


def test_cli_benchmark_records_a_chosen_order(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--models", "mostpop", "--seeds", "4", "--quick", "--out", str(out),
                 "--order", "model"]) == 0
    assert json.loads((out / "results.json").read_text())["command"].endswith("--quick --order model")


def test_runs_are_also_scored_with_the_history_ranked_as_the_official_code_does(prepared, tmp_path):
    from sinerec.rescore import rescore
    from sinerec.runs import load_run

    run = dict(out_dir=tmp_path / "loo", seeds=[0, 1], prepared=prepared, overrides=[*TINY, "train.epochs=1"],
               isolate=False, log=lambda line: None)
    doc = run_benchmark(["sasrec"], **run).document
    for record in doc["runs"]:  # what `sinerec evaluate --set protocol.exclude_history=false` gives, exactly
        again = rescore(load_run(tmp_path / "loo" / "runs" / f"sasrec-seed{record['seed']}"),
                        ["protocol.exclude_history=false"], parts=["test"])["test"]
        assert record["test_history_ranked"] == again
        assert record["test_history_ranked"]["HR@10"] != record["test"]["HR@10"]  # ranking the history changes it
    ranked = doc["summary"]["sasrec"]["test_history_ranked"]
    values = [100 * r["test_history_ranked"]["NDCG@10"] for r in doc["runs"]]
    assert ranked["n_seeds"] == 2 and 100 * ranked["NDCG@10"]["mean"] == pytest.approx(statistics.mean(values))
    assert 100 * ranked["NDCG@10"]["std"] == pytest.approx(statistics.stdev(values))
    table = (tmp_path / "loo" / "results.md").read_text()
    assert "## Scored as the official code does (history ranked)" in table
    assert f"| sasrec | 2 | {100 * ranked['HR@10']['mean']:.2f} ± {100 * ranked['HR@10']['std']:.2f} |" in table
    # a protocol that ranks the history already has nothing to add
    comirec = Prepared(prepared.data, make_split(prepared.data, ProtocolConfig(name="comirec")), 0.0)
    doc = run_benchmark(["mostpop"], **{**run, "out_dir": tmp_path / "comirec", "prepared": comirec}).document
    assert "test_history_ranked" not in doc["runs"][0] and "test_history_ranked" not in doc["summary"]["mostpop"]
    assert "history ranked" not in (tmp_path / "comirec" / "results.md").read_text()


def test_a_run_that_ends_at_its_epoch_ceiling_without_early_stopping_is_marked(prepared, tmp_path):
    from sinerec.benchmark.report import at_ceiling, format_table, markdown_document

    # patience 5 cannot fire in 2 epochs: the run ends at its ceiling and may still have been improving
    doc = run_benchmark(["mostpop", "sasrec"], out_dir=tmp_path, seeds=[0], prepared=prepared,
                        overrides=[*TINY, "train.patience=5"], isolate=False, log=lambda line: None).document
    assert at_ceiling(doc) == {"sasrec": [0]}  # mostpop trains no epoch
    md = markdown_document(doc)
    row = next(line for line in md.splitlines() if "| sasrec |" in line)
    assert "2 (" in row and ")†" in row
    # the note is a paragraph of its own: in Markdown a line right under a table would be one more row
    assert "\n\n† reached its epoch ceiling" in format_table(doc, markdown=True)
    assert "sasrec (seed 0)" in md
    # with patience 1 early stopping can end a 2-epoch run, so only a run whose last epoch was its best is marked
    for r in doc["runs"]:
        r["best_epoch"] = 1
    doc["settings"]["sasrec"]["resolved"]["train"]["patience"] = 1
    assert at_ceiling(doc) == {} and "†" not in format_table(doc, markdown=False)
