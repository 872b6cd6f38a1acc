"""Run directories: the one owner of their layout, what goes into them and how they are read back.

A run directory (``runs/MODEL-DATASET-TIME`` by default, see :func:`default_run_dir`) holds:

    RUN/config.json     CONFIG       the resolved configuration                          (header)
    RUN/data.json       DATA_INFO    dataset summary, preprocessing steps and split summary;   (header)
                                     for a run of a prepared dataset, its path and fingerprint
    RUN/items.csv       ITEMS        item index -> original id, title, categories          (header)
    RUN/users.csv       USERS        user index -> original id                             (header)
    RUN/sequences.npz   SEQUENCES    the preprocessed sequences (items, offsets); not written  (header)
                                     for a run of a prepared dataset, whose arrays it maps
    RUN/log.jsonl       LOG          one JSON object per epoch                             (training)
    RUN/model.pt        MODEL        best weights (a plain state dict, weights_only)       (training)
    RUN/checkpoint.pt   CHECKPOINT   last full training state, for resuming                (training)
    RUN/metrics.json    METRICS      final validation and test metrics (metrics_document)  (end)

The header is written before training (:func:`write_run_header`), the training files by the trainer through
the functions here (:func:`save_best_weights`, :func:`save_checkpoint`, :func:`append_log`), the metrics
document at the end (:func:`write_metrics`). Every file is written atomically (``sinerec.storage``) except the
log, which grows by whole lines and is rewritten atomically on resume. A directory holds a run
(:func:`holds_run`) once it has a checkpoint or metrics; :func:`load_run` reads a finished one back.

One process writes a run at a time: it holds ``RUN/.lock`` (:func:`locked`, an ``fcntl.flock`` released when
the process exits, however it exits); a second writer is refused with the holder's pid. While it holds the
lock it removes what interrupted atomic writes left behind, and a fresh start (:func:`start_fresh`) drops
the training files of a run killed before its first checkpoint. A resumed run keeps its data: the
checkpoint records the dataset and split fingerprints and :func:`check_resume_data` refuses other data.

The data files (``data.json``, id maps, sequences or the reference to a prepared dataset, and reading them
back: :func:`load_data`) are written and read by ``sinerec.run_data``; this module re-exports its names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sinerec import __version__, runtime
from sinerec.config import Config
from sinerec.data.preprocess import SequenceData
from sinerec.errors import SinerecError
from sinerec.models.base import SequentialRecommender
from sinerec.run_data import (
    CONFIG,
    DATA_INFO,
    ITEMS,
    SEQUENCES,
    USERS,
    check_prepared,
    copy_sequences,
    dataset_summary,
    load_data,
    prepared_reference,
    read_json,
    relink,
    save_data,
    write_run_data,
)
from sinerec.storage import atomic_write_text, load_torch, remove_temporaries, save_torch, write_json

if TYPE_CHECKING:
    from sinerec.pipeline import Prepared
    from sinerec.train import TrainResult

__all__ = ["CONFIG", "DATA_INFO", "ITEMS", "USERS", "SEQUENCES", "LOG", "MODEL", "CHECKPOINT", "METRICS", "LAYOUT",
           "HEADER", "default_run_dir", "holds_run", "write_run_header", "write_run_data", "save_data",
           "dataset_summary", "machine_summary", "metrics_document", "write_metrics", "save_best_weights",
           "save_checkpoint", "load_checkpoint", "append_log", "rewrite_log", "LoadedRun", "load_data", "load_run",
           "LOCK", "FIXED_ON_RESUME", "locked", "start_fresh", "write_config", "resume_changes",
           "checkpoint_summary", "check_resume_data", "read_json", "prepared_reference", "check_prepared",
           "relink", "copy_sequences"]

LOG = "log.jsonl"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
LOCK = ".lock"

#: Every file of a run directory -> what it holds (the table of the module docstring).
LAYOUT: dict[str, str] = {
    CONFIG: "the resolved configuration",
    DATA_INFO: "dataset summary, preprocessing steps and split summary (fingerprints)",
    ITEMS: "item index -> original id, title, categories",
    USERS: "user index -> original id",
    SEQUENCES: "the preprocessed sequences (items, offsets), so a run can recommend for known users (a run of "
               "a prepared dataset maps the dataset's instead)",
    LOG: "one JSON object per epoch",
    MODEL: "best weights (a plain state dict: torch.load(..., weights_only=True))",
    CHECKPOINT: "last full training state, for resuming",
    METRICS: "final validation and test metrics",
    LOCK: "held (flock) by the process writing the run; holds its pid",
}
#: The files written before training starts (SEQUENCES only for a run of a source file).
HEADER = (CONFIG, DATA_INFO, ITEMS, USERS, SEQUENCES)


# ----------------------------------------------------------------------------------------- naming
def default_run_dir(model: str, dataset: str, when: float | None = None, root: str | Path = "runs") -> Path:
    """``runs/MODEL-DATASET-YYYYmmdd-HHMMSS`` (local time ``when``, default now)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return Path(root) / f"{model}-{dataset}-{stamp}"


def holds_run(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a run that has started training (a checkpoint) or finished (metrics)."""
    return (run_dir / METRICS).exists() or (run_dir / CHECKPOINT).exists()


# ----------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``RUN/.lock`` for the block: the one process writing ``run_dir``. Creates ``run_dir``; removes
    the temporary files of interrupted atomic writes. A directory another process holds is refused with
    :class:`SinerecError` naming that process's pid; a folder created here that is left holding only the
    lock (the block failed before writing anything) is removed again."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SinerecError(f"{run_dir}: --out is a file, not a run directory")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise SinerecError(f"{run_dir}: in use by another sinerec process (pid {holder}); wait for it to "
                               "finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_temporaries(run_dir)
        yield
    except BaseException:
        if created and sorted(os.listdir(run_dir)) == [LOCK]:
            (run_dir / LOCK).unlink(missing_ok=True)
            run_dir.rmdir()
        raise
    finally:
        os.close(fd)  # releases the flock


def start_fresh(run_dir: Path) -> None:
    """Drop the training files a run killed before its first checkpoint left (log, best weights), so that a
    new run in ``run_dir`` does not append to them. Refuses a directory that holds a run (:func:`holds_run`)."""
    if holds_run(run_dir):
        raise SinerecError(f"{run_dir} already holds a run; choose another --out or pass --resume")
    for name in (LOG, MODEL):
        (run_dir / name).unlink(missing_ok=True)


def write_config(run_dir: Path, config: Config) -> None:
    """``config.json``: the resolved configuration (rewritten when a resume changes settings)."""
    write_json(run_dir / CONFIG, config.to_dict())


#: Settings a resumed run cannot change (they decide what the checkpoint's weights and metrics mean); the
#: data settings are guarded by the fingerprints instead (:func:`check_resume_data`).
FIXED_ON_RESUME = ("model", "model_params", "protocol", "data.max_len", "train.seed", "train.monitor")


def resume_changes(saved: Config, new: Config) -> list[str]:
    """``key: old -> new`` for each of :data:`FIXED_ON_RESUME` that ``new`` changes (empty: resumable)."""
    old_tree, new_tree = saved.to_dict(), new.to_dict()
    changes = []
    for key in FIXED_ON_RESUME:
        section, _, name = key.partition(".")
        old_value = old_tree[section][name] if name else old_tree[section]
        new_value = new_tree[section][name] if name else new_tree[section]
        if old_value != new_value:
            changes.append(f"{key}: {json.dumps(old_value)} -> {json.dumps(new_value)}")
    return changes


def checkpoint_summary(run_dir: Path) -> dict[str, Any]:
    """The checkpoint's epoch and data fingerprints (``data_fingerprint`` and ``split_fingerprint``, None in a
    checkpoint older than them), read without loading its tensors into memory."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise SinerecError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - the full load names the damage
        state = load_torch(path)
    return {"epoch": int(state["epoch"]), "data_fingerprint": state.get("data_fingerprint"),
            "split_fingerprint": state.get("split_fingerprint")}


def check_resume_data(run_dir: Path, checkpoint: dict[str, Any], data_fingerprint: str,
                      split_fingerprint: str) -> None:
    """Refuse to resume ``run_dir`` on data other than its own: the fingerprints the checkpoint recorded
    (or, for an older checkpoint, ``data.json``'s) must equal those of the data read now."""
    saved_data, saved_split = checkpoint.get("data_fingerprint"), checkpoint.get("split_fingerprint")
    if saved_data is None:
        info = read_json(run_dir / DATA_INFO)
        saved_data, saved_split = info["dataset"]["fingerprint"], info["protocol"]["fingerprint"]
    if (saved_data, saved_split) != (data_fingerprint, split_fingerprint):
        raise SinerecError(
            f"--resume: {run_dir} was trained on other data (dataset fingerprint {saved_data}, split "
            f"{saved_split}); the configured data now gives {data_fingerprint}, split {split_fingerprint}. "
            "Restore the run's data files or start a new run")


def check_resume_precision(run_dir: Path, checkpoint: dict[str, Any], amp: str, precision: str,
                           device: str) -> None:
    """Refuse to resume ``run_dir`` in a precision other than the one it trained in (the checkpoint's; for
    an older checkpoint, what ``amp`` meant on ``device`` then: :func:`sinerec.runtime.legacy_precision`)."""
    trained_in = checkpoint.get("precision") or runtime.legacy_precision(amp, device)
    if trained_in != precision:  # one run, one precision
        setting = "off" if trained_in == "float32" else "bf16"
        raise SinerecError(f"--resume: {run_dir / CHECKPOINT} trained in {trained_in}, and train.amp = {amp!r} "
                           f"trains in {precision} here; set train.amp = {setting!r} (--set train.amp={setting}) "
                           "to continue it")


# ----------------------------------------------------------------------------------------- header
def write_run_header(run_dir: Path, config: Config, prepared: Prepared) -> None:
    """The files written before training (:data:`HEADER`): configuration, data summary, id maps, sequences
    (or, for data mapped from a prepared dataset, the reference to it: ``sinerec.run_data``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    write_run_data(run_dir, prepared)


# ----------------------------------------------------------------------------------------- training files
def save_best_weights(run_dir: Path, state: dict[str, torch.Tensor]) -> None:
    """``model.pt``: the best weights so far, a plain state dict."""
    save_torch(run_dir / MODEL, state)


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """``checkpoint.pt``: the full training state after an epoch (see ``Trainer.fit``)."""
    save_torch(run_dir / CHECKPOINT, state)


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The state :func:`save_checkpoint` wrote; an error when there is none."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise SinerecError(f"--resume: no checkpoint at {path}")
    state: dict[str, Any] = load_torch(path)
    return state


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """One epoch's record as a line of ``log.jsonl``."""
    with open(run_dir / LOG, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def rewrite_log(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """``log.jsonl`` replaced by ``records`` (on resume: drop epochs after the checkpoint)."""
    atomic_write_text(run_dir / LOG, "".join(json.dumps(r) + "\n" for r in records))


# ----------------------------------------------------------------------------------------- metrics
def machine_summary() -> dict[str, Any]:
    """Versions, CPU count, torch threads, GPU and platform of this process."""
    return {"python": platform.python_version(), "torch": torch.__version__, "sinerec": __version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform()}


def metrics_document(config: Config, prepared: Prepared, result: TrainResult,
                     processes: int | None = None) -> dict[str, Any]:
    """The content of ``metrics.json`` (metrics as fractions); ``processes`` (ranks that trained) is recorded
    under ``train`` when given."""
    train: dict[str, Any] = {"best_epoch": result.best_epoch, "epochs": len(result.history),
                             "seconds": round(result.train_seconds, 2),
                             "examples_per_second": round(result.examples_per_second, 1),
                             "precision": result.precision}
    if processes is not None:
        train["processes"] = processes
    return {
        "model": config.model,
        "dataset": {k: v for k, v in dataset_summary(prepared.data).items() if k != "steps"},
        "protocol": prepared.split.summary(),
        "valid": result.valid.means,
        "test": result.test.means,
        "evaluated": {"valid_queries": result.valid.n_queries, "test_queries": result.test.n_queries},
        "train": train,
        "machine": machine_summary(),
    }


def write_metrics(run_dir: Path, document: dict[str, Any]) -> None:
    """``metrics.json``: written last, it marks the run as finished."""
    write_json(run_dir / METRICS, document)


# ----------------------------------------------------------------------------------------- reading
def _optional_json(path: Path) -> Any:
    """``metrics.json``: None when missing or damaged (with a warning); serving does not need it."""
    if not path.exists():
        return None
    try:
        return read_json(path)
    except SinerecError as exc:
        warnings.warn(f"{exc}; ignoring it", stacklevel=3)
        return None


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The records of ``log.jsonl`` (empty when missing); damaged lines are dropped with a warning."""
    if not path.exists():
        return []
    records, bad = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(number)
    if bad:
        warnings.warn(f"{path}: ignoring {len(bad)} damaged line(s) (first: line {bad[0]})", stacklevel=3)
    return records


@dataclass
class LoadedRun:
    """A trained run, ready to score: the model in eval mode, its data and its records."""

    run_dir: Path
    config: Config
    model: SequentialRecommender
    data: SequenceData
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]]


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """Load ``run_dir`` (written by ``sinerec train``): config, data, best weights. The metrics and the log are
    optional: missing or damaged ones give None / an empty history (with a warning for damaged ones)."""
    from sinerec.config import load_config
    from sinerec.models import build_model

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise SinerecError(f"{run_dir}: not a sinerec run directory ({CONFIG} is missing)")
    if not (run_dir / MODEL).exists():
        raise SinerecError(f"{run_dir}: the run has no {MODEL} yet (is it still training?)")
    config = load_config(read_json(run_dir / CONFIG))
    data = load_data(run_dir)
    model = build_model(config.model, data.num_items, config.data.max_len, config.model_params)
    try:
        model.load_state_dict(load_torch(run_dir / MODEL))
    except RuntimeError as exc:  # shapes or names that do not fit the configured model
        raise SinerecError(f"{run_dir / MODEL}: does not fit the model of {CONFIG} "
                           f"({str(exc).splitlines()[0]})") from None
    model.to(device).eval()
    return LoadedRun(run_dir, config, model, data, _optional_json(run_dir / METRICS), _read_log(run_dir / LOG))
