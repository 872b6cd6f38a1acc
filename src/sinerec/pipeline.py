"""The data side of a run: configuration -> interactions -> preprocessed sequences -> protocol split.

What a run directory holds is ``sinerec.runs``; training into one is ``sinerec.job``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sinerec.config import Config, DataConfig
from sinerec.data import readers
from sinerec.data.datasets import DATASETS, load_dataset
from sinerec.data.frame import Interactions
from sinerec.data.preprocess import SequenceData, preprocess
from sinerec.data.splits import Split, make_split
from sinerec.errors import ConfigError

CUSTOM_FORMATS = ("table", "parquet", "recbole", "comirec", "sequences", "taobao", "ml-1m", "movielens")


def load_interactions(cfg: DataConfig) -> Interactions:
    """Read the configured dataset: a named one (``cfg.dataset``) or a custom file (``cfg.path``)."""
    if cfg.path is None:
        if cfg.dataset not in DATASETS:
            raise ConfigError(f"data.dataset: unknown dataset {cfg.dataset!r}; built-in: "
                              f"{', '.join(DATASETS)}; or give data.path and data.format for your own file")
        options: dict[str, Any] = {"skip_bad_lines": cfg.skip_bad_lines}
        return load_dataset(cfg.dataset, data_dir=cfg.data_dir, **options)
    fmt = cfg.format or "table"
    name = cfg.dataset if cfg.dataset not in DATASETS else None
    common: dict[str, Any] = {"skip_bad_lines": cfg.skip_bad_lines}
    if name is not None:
        common["name"] = name
    if fmt in ("table", "parquet"):
        return readers.read_table(cfg.path, cfg.user_col, cfg.item_col, cfg.timestamp_col, cfg.category_col,
                                  cfg.behavior_col, sep=cfg.sep, header=cfg.header,
                                  fmt="parquet" if fmt == "parquet" else None, **common)
    if fmt == "recbole":
        return readers.read_recbole(cfg.path, cfg.item_path, **common)
    if fmt == "comirec":
        return readers.read_comirec(cfg.path, cfg.item_path, **common)
    if fmt == "sequences":
        return readers.read_sequences(cfg.path, cfg.item_path, **common)
    if fmt == "taobao":
        return readers.read_taobao(cfg.path, behaviors=None, **common)
    if fmt == "ml-1m":
        return readers.read_ml1m(cfg.path, **common)
    if fmt == "movielens":
        return readers.read_movielens_csv(cfg.path, **common)
    raise ConfigError(f"data.format: unknown format {fmt!r}; choose from {', '.join(CUSTOM_FORMATS)}")


@dataclass
class Prepared:
    """A run's data: the preprocessed sequences, their split, and the seconds reading and splitting took."""

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
