"""The glue the command line and the benchmarks share: configuration -> data -> split -> trained run."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sinerec import __version__
from sinerec.config import Config, DataConfig
from sinerec.data.datasets import DATASETS, load_dataset
from sinerec.data.formats import DEFAULT_FORMAT, FORMATS, ReadOptions
from sinerec.data.frame import Interactions
from sinerec.data.preprocess import SequenceData, preprocess
from sinerec.data.splits import Split, make_split
from sinerec.errors import ConfigError
from sinerec.runs import save_data
from sinerec.storage import write_json


def load_interactions(cfg: DataConfig) -> Interactions:
    """Read the configured dataset: a named one (``cfg.dataset``) or a custom file (``cfg.path``) in the
    format ``cfg.format`` (a key of ``sinerec.data.formats.FORMATS``; default table)."""
    if cfg.path is None:
        if cfg.dataset not in DATASETS:
            raise ConfigError(f"data.dataset: unknown dataset {cfg.dataset!r}; built-in: "
                              f"{', '.join(DATASETS)}; or give data.path and data.format for your own file")
        options: dict[str, Any] = {"skip_bad_lines": cfg.skip_bad_lines}
        return load_dataset(cfg.dataset, data_dir=cfg.data_dir, **options)
    fmt = cfg.format or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise ConfigError(f"data.format: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[fmt].read(_read_options(cfg, cfg.path))


def _read_options(cfg: DataConfig, path: str) -> ReadOptions:
    """What a format reader takes from the ``data`` section (a built-in dataset's name is not a custom name)."""
    return ReadOptions(path=path, item_path=cfg.item_path, user_col=cfg.user_col, item_col=cfg.item_col,
                       timestamp_col=cfg.timestamp_col, category_col=cfg.category_col,
                       behavior_col=cfg.behavior_col, sep=cfg.sep, header=cfg.header,
                       name=cfg.dataset if cfg.dataset not in DATASETS else None,
                       skip_bad_lines=cfg.skip_bad_lines)


@dataclass
class Prepared:
    data: SequenceData
    split: Split
    seconds: float


def prepare(config: Config) -> Prepared:
    """Read, preprocess and split: the data side of a run."""
    t0 = time.perf_counter()
    interactions = load_interactions(config.data)
    data = preprocess(interactions, config.data.preprocess_config())
    split = make_split(data, config.protocol)
    return Prepared(data, split, time.perf_counter() - t0)


def dataset_summary(data: SequenceData) -> dict[str, Any]:
    d = data.describe()
    return {"name": d["name"], "n_users": d["n_users"], "n_items": d["n_items"],
            "n_interactions": d["n_interactions"], "fingerprint": d["fingerprint"], "steps": data.steps}


def machine_summary() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "torch": torch.__version__, "sinerec": __version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform()}


def write_run_header(run_dir: Path, config: Config, prepared: Prepared) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config.to_dict())
    write_json(run_dir / "data.json", {"dataset": dataset_summary(prepared.data),
                                      "protocol": prepared.split.summary()})
    save_data(run_dir, prepared.data)


def metrics_document(config: Config, prepared: Prepared, result: Any) -> dict[str, Any]:
    """The content of ``metrics.json`` (metrics as fractions)."""
    return {
        "model": config.model,
        "dataset": {k: v for k, v in dataset_summary(prepared.data).items() if k != "steps"},
        "protocol": prepared.split.summary(),
        "valid": result.valid.means,
        "test": result.test.means,
        "train": {"best_epoch": result.best_epoch, "epochs": len(result.history),
                  "seconds": round(result.train_seconds, 2),
                  "examples_per_second": round(result.examples_per_second, 1)},
        "machine": machine_summary(),
    }
