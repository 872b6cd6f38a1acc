"""Experiment tracking: training callbacks that log a run to TensorBoard or MLflow.

``sinerec train --log-to tensorboard --log-to mlflow`` (or ``make_callbacks(["tensorboard"])`` passed to
``sinerec.job.train_run(callbacks=...)``). Each adapter is an optional extra and imports its library only
when made: ``pip install "sinerec[tensorboard]"`` / ``"sinerec[mlflow]"``.

What is logged, per epoch (step = the epoch number): ``train/loss``, ``train/likelihood_loss``,
``train/examples_per_second`` and, after a validation run, ``valid/METRIC`` (e.g. ``valid/NDCG@10``); at the
end, ``test/METRIC`` and ``best/valid/METRIC`` of the best weights at step ``best_epoch``. MLflow also gets
the whole configuration as parameters (``train.lr``, ``model_params.dim``, ...) and its metric names spell
``@`` as ``_at_`` (``valid/NDCG_at_10``), which MLflow does not accept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinerec import storage
from sinerec.callbacks import Callback
from sinerec.errors import SinerecError

if TYPE_CHECKING:
    from sinerec.config import Config
    from sinerec.train import TrainResult

__all__ = ["MLFLOW_DB", "MLFLOW_RUN", "TENSORBOARD_DIR", "TRACKERS", "MLflowCallback", "TensorBoardCallback",
           "epoch_scalars", "final_scalars", "make_callbacks", "mlflow_key"]

#: under the run directory: TensorBoard's event files, the default MLflow store, the MLflow run's id
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_RUN = "mlflow-run.json"


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """An epoch's record (``log.jsonl`` line) as scalars named ``train/...`` and ``valid/...``."""
    scalars = {f"train/{key}": float(record[key])
               for key in ("loss", "likelihood_loss", "examples_per_second") if key in record}
    scalars.update({f"valid/{name}": float(value) for name, value in record.get("valid", {}).items()})
    return scalars


def final_scalars(result: TrainResult) -> dict[str, float]:
    """The best weights' metrics: ``test/...`` and ``best/valid/...``."""
    scalars = {f"test/{name}": float(value) for name, value in result.test.means.items()}
    scalars.update({f"best/valid/{name}": float(value) for name, value in result.valid.means.items()})
    return scalars


def _require(module: str, extra: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise SinerecError(f"--log-to {extra} needs the {module} package: pip install \"sinerec[{extra}]\"") from None


def _folder(explicit: str | Path | None, run_dir: Path | None, name: str, what: str) -> Path:
    if explicit is not None:
        return Path(explicit)
    if run_dir is None:
        raise SinerecError(f"{what}: the trainer has no run directory; give the adapter a folder")
    return run_dir / name


class TensorBoardCallback(Callback):
    """Writes the run's scalars as TensorBoard event files into ``log_dir`` (default ``RUN_DIR/tensorboard``;
    view with ``tensorboard --logdir RUN_DIR``)."""

    def __init__(self, log_dir: str | Path | None = None) -> None:
        _require("tensorboard", "tensorboard")
        self.log_dir = log_dir
        self.writer: Any = None

    def on_fit_start(self, config: Config, run_dir: Path | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(_folder(self.log_dir, run_dir, TENSORBOARD_DIR, "tensorboard")))

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        for name, value in epoch_scalars(record).items():
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def on_fit_end(self, result: TrainResult) -> None:
        for name, value in final_scalars(result).items():
            self.writer.add_scalar(name, value, result.best_epoch)
        self.writer.close()


def mlflow_key(name: str) -> str:
    """A metric name as MLflow accepts it: ``valid/NDCG@10`` -> ``valid/NDCG_at_10``."""
    return name.replace("@", "_at_")


class MLflowCallback(Callback):
    """Logs the run to MLflow: the configuration as parameters, the scalars as metric histories.

    The store is ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file ``RUN_DIR/mlflow.db``
    (``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db``). The MLflow run's id is kept in
    ``RUN_DIR/mlflow-run.json``, so a resumed training continues the same MLflow run.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = "sinerec") -> None:
        _require("mlflow", "mlflow")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client: Any = None
        self.run_id = ""

    def on_fit_start(self, config: Config, run_dir: Path | None) -> None:
        from mlflow.tracking import MlflowClient

        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = f"sqlite:///{_folder(None, run_dir, MLFLOW_DB, 'mlflow').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        saved = run_dir / MLFLOW_RUN if run_dir is not None else None
        if saved is not None and saved.is_file() and json.loads(saved.read_text()).get("tracking_uri") == uri:
            self.run_id = json.loads(saved.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            artifacts = (run_dir / "mlflow-artifacts").resolve().as_uri() if run_dir is not None else None
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=artifacts)
        name = run_dir.name if run_dir is not None else None
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        if saved is not None:
            storage.write_json(saved, {"tracking_uri": uri, "run_id": self.run_id})
        from mlflow.entities import Param

        params = [Param(key, str(value)[:6000]) for key, value in _flat(config.to_dict())]
        if run_dir is not None:
            params.append(Param("run_dir", str(run_dir)))
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def _log(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(mlflow_key(name), value, now, step)
                                                    for name, value in scalars.items()])

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        self._log(epoch_scalars(record), epoch)

    def on_fit_end(self, result: TrainResult) -> None:
        self._log({**final_scalars(result), "best_epoch": float(result.best_epoch)}, result.best_epoch)
        self.client.set_terminated(self.run_id, "FINISHED")


def _flat(tree: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


#: ``--log-to`` name -> adapter (made without arguments: run-directory defaults)
TRACKERS: dict[str, Callable[[], Callback]] = {"tensorboard": TensorBoardCallback, "mlflow": MLflowCallback}


def make_callbacks(names: Iterable[str]) -> list[Callback]:
    """The adapters named (keys of :data:`TRACKERS`), each once, in order. Raises SinerecError for an unknown
    name or a missing package (before any training)."""
    callbacks = []
    for name in dict.fromkeys(names):
        if name not in TRACKERS:
            raise SinerecError(f"--log-to: unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
        callbacks.append(TRACKERS[name]())
    return callbacks
