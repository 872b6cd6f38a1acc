"""Training callbacks (order, records, stopping) and the TensorBoard and MLflow adapters, read back with each
library's own reader."""

import json
import sys

import pytest

from sinerec import job, runs, tracking
from sinerec.callbacks import Callback
from sinerec.cli import main
from sinerec.config import load_config
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import make_split
from sinerec.data.synthetic import planted_concepts
from sinerec.errors import SinerecError
from sinerec.pipeline import Prepared

TRAIN = ["data.max_len=6", "train.batch_size=64", "train.progress=false", "train.epochs=3", "train.threads=1",
         "train.patience=10"]
TINY = [*TRAIN, "model_params.dim=8", "model_params.num_concepts=4", "model_params.num_interests=2"]


@pytest.fixture(scope="module")
def prepared():
    data = preprocess(planted_concepts(n_users=40, n_items=24, n_concepts=3, length=9, seed=3))
    return Prepared(data, make_split(data, load_config(overrides=TINY).protocol), 0.0)


class Recorder(Callback):
    """Records every hook; asks to stop after epoch ``stop_after``."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.stop_after = stop_after

    def on_fit_start(self, config, run_dir):
        self.calls.append(("start", config.model, run_dir))

    def on_epoch_end(self, epoch, record):
        self.calls.append(("epoch", epoch, json.loads(json.dumps(record))))

    def should_stop(self):
        self.calls.append(("ask",))
        return self.stop_after is not None and self.calls[-2][1] >= self.stop_after

    def on_fit_end(self, result):
        self.calls.append(("end", result.best_epoch, result.test.means["NDCG@10"]))


def log_lines(run_dir):
    return [json.loads(line) for line in (run_dir / runs.LOG).read_text().splitlines()]


def test_callbacks_are_called_in_order_with_the_logged_records(tmp_path, prepared):
    rec = Recorder()
    run = job.train_run(load_config(overrides=TINY), tmp_path / "run", prepared=prepared, log=lambda line: None,
                        callbacks=[rec])
    lines = log_lines(run.run_dir)
    assert len(lines) == 3
    assert rec.calls == [("start", "sine", tmp_path / "run"),
                         ("epoch", 1, lines[0]), ("ask",), ("epoch", 2, lines[1]), ("ask",), ("epoch", 3, lines[2]),
                         ("ask",), ("end", run.result.best_epoch, run.metrics["test"]["NDCG@10"])]


def test_a_callback_stops_training_and_the_run_is_still_complete(tmp_path, prepared):
    first, second = Recorder(), Recorder(stop_after=2)  # every callback is asked, not only up to the first yes
    run = job.train_run(load_config(overrides=TINY), tmp_path / "run", prepared=prepared, log=lambda line: None,
                        callbacks=[first, second])
    assert [line["epoch"] for line in log_lines(run.run_dir)] == [1, 2]  # 3 epochs configured
    assert [c[0] for c in first.calls] == ["start", "epoch", "ask", "epoch", "ask", "end"]
    assert json.loads((run.run_dir / runs.METRICS).read_text())["test"] == run.metrics["test"]
    assert runs.load_run(run.run_dir).metrics["train"]["epochs"] == 2


def test_an_untrained_model_gets_start_and_end_only(tmp_path, prepared):
    rec = Recorder()
    job.train_run(load_config(overrides=[*TRAIN, "model=mostpop"]), tmp_path / "pop", prepared=prepared,
                  callbacks=[rec])
    assert [c[0] for c in rec.calls] == ["start", "end"] and rec.calls[-1][1] == 0


def test_tensorboard_event_file_holds_the_runs_scalars(tmp_path, prepared):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = job.train_run(load_config(overrides=[*TINY, "train.epochs=2"]), tmp_path / "run", prepared=prepared,
                        log=lambda line: None, callbacks=tracking.make_callbacks(["tensorboard"]))
    folder = run.run_dir / tracking.TENSORBOARD_DIR
    assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())
    events = EventAccumulator(str(folder))
    events.Reload()
    lines = log_lines(run.run_dir)

    def series(tag):
        return [(s.step, s.value) for s in events.Scalars(tag)]

    assert series("train/loss") == [(1, pytest.approx(lines[0]["loss"])), (2, pytest.approx(lines[1]["loss"]))]
    assert series("valid/NDCG@10") == [(e, pytest.approx(lines[e - 1]["valid"]["NDCG@10"])) for e in (1, 2)]
    assert series("test/HR@50") == [(run.result.best_epoch, pytest.approx(run.metrics["test"]["HR@50"]))]


def test_mlflow_run_holds_params_and_metric_history_and_resumes(tmp_path, prepared, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config(overrides=[*TINY, "train.epochs=2", "train.lr=0.0025"])
    run = job.train_run(config, tmp_path / "run", prepared=prepared, log=lambda line: None,
                        callbacks=tracking.make_callbacks(["mlflow"]))
    saved = json.loads((run.run_dir / tracking.MLFLOW_RUN).read_text())
    assert saved["tracking_uri"] == f"sqlite:///{(run.run_dir / tracking.MLFLOW_DB).resolve()}"
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    logged = client.get_run(saved["run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "run"
    assert logged.data.params["train.lr"] == "0.0025" and logged.data.params["model_params.dim"] == "8"
    assert logged.data.params["model"] == "sine" and logged.data.params["run_dir"] == str(run.run_dir)
    lines = log_lines(run.run_dir)
    history = sorted((m.step, m.value) for m in client.get_metric_history(saved["run_id"], "train/loss"))
    assert history == [(1, pytest.approx(lines[0]["loss"])), (2, pytest.approx(lines[1]["loss"]))]
    ndcg = client.get_metric_history(saved["run_id"], "valid/NDCG_at_10")
    assert sorted(m.step for m in ndcg) == [1, 2]
    assert logged.data.metrics["test/NDCG_at_10"] == pytest.approx(run.metrics["test"]["NDCG@10"])
    # a resumed training continues the same MLflow run
    again = tracking.MLflowCallback()
    again.on_fit_start(config, run.run_dir)
    assert again.run_id == saved["run_id"] and client.get_run(saved["run_id"]).info.status == "RUNNING"
    assert len(client.search_runs([logged.info.experiment_id])) == 1


def test_cli_log_to_tensorboard(tmp_path):
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{(u * 3 + t) % 11},{t}\n"
                                                             for u in range(20) for t in range(7)))
    out = tmp_path / "cli"
    assert main(["train", "--path", str(csv), "--format", "table", "--out", str(out), "--quiet", "--epochs", "1",
                 "--set", "model_params.dim=8", "--set", "model_params.num_concepts=4", "--threads", "1",
                 "--log-to", "tensorboard", "--log-to", "tensorboard"]) == 0
    assert len(list((out / tracking.TENSORBOARD_DIR).glob("events.out.tfevents*"))) == 1
    with pytest.raises(SystemExit) as exc:
        main(["train", "--log-to", "wandb"])
    assert exc.value.code == 2


def test_cli_choices_are_the_trackers_table():
    from sinerec.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    action = next(a for a in train._actions if a.dest == "log_to")
    assert action.choices == list(tracking.TRACKERS)


def test_a_missing_tracker_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    message = r'--log-to mlflow needs the mlflow package: pip install "sinerec\[mlflow\]"'
    with pytest.raises(SinerecError, match=message):
        tracking.make_callbacks(["mlflow"])
    with pytest.raises(SinerecError, match="unknown tracker 'wandb'"):
        tracking.make_callbacks(["wandb"])
