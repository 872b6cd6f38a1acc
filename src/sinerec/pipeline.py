"""The data side of a run: configuration -> interactions -> preprocessed sequences -> protocol split.

What a run directory holds is ``sinerec.runs``; training into one is ``sinerec.job``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from sinerec.config import Config, DataConfig
from sinerec.data.datasets import DATASETS, load_dataset
from sinerec.data.formats import DEFAULT_FORMAT, FORMATS, ReadOptions
from sinerec.data.frame import Interactions
from sinerec.data.prepared import load_sequences, load_split, read_summary
from sinerec.data.preprocess import SequenceData, preprocess
from sinerec.data.splits import Split, make_split
from sinerec.errors import ConfigError, DataError


def load_interactions(cfg: DataConfig, compact: bool = False) -> Interactions:
    """Read the configured dataset: a named one (``cfg.dataset``) or a custom file (``cfg.path``) in the
    format ``cfg.format`` (a key of ``sinerec.data.formats.FORMATS``; default table). ``compact``: the log is
    only preprocessed, so the reader may hold it in less memory (``ReadOptions.compact``)."""
    if cfg.path is None:
        if cfg.dataset not in DATASETS:
            raise ConfigError(f"data.dataset: unknown dataset {cfg.dataset!r}; built-in: "
                              f"{', '.join(DATASETS)}; or give data.path and data.format for your own file")
        options: dict[str, Any] = {"skip_bad_lines": cfg.skip_bad_lines}
        return load_dataset(cfg.dataset, data_dir=cfg.data_dir, **options)
    fmt = cfg.format or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise ConfigError(f"data.format: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[fmt].read(_read_options(cfg, cfg.path, compact))


def _read_options(cfg: DataConfig, path: str, compact: bool = False) -> ReadOptions:
    """What a format reader takes from the ``data`` section (a built-in dataset's name is not a custom name)."""
    return ReadOptions(path=path, item_path=cfg.item_path, user_col=cfg.user_col, item_col=cfg.item_col,
                       timestamp_col=cfg.timestamp_col, category_col=cfg.category_col,
                       behavior_col=cfg.behavior_col, sep=cfg.sep, header=cfg.header,
                       name=cfg.dataset if cfg.dataset not in DATASETS else None,
                       skip_bad_lines=cfg.skip_bad_lines, compact=compact)


@dataclass
class Prepared:
    """A run's data: the preprocessed sequences, their split, the seconds reading and splitting took, and the
    prepared dataset (``data.prepared``) they were mapped from, if any."""

    data: SequenceData
    split: Split
    seconds: float
    folder: str | None = None


def prepare(config: Config) -> Prepared:
    """Read, preprocess and split: the data side of a run. With ``data.prepared`` the sequences (and the split,
    when the artifact stores this protocol's) are memory-mapped from that prepared dataset instead
    (:func:`load_prepared`). Data a run cannot be trained and evaluated on raises
    :class:`~sinerec.errors.DataError` (:func:`check_usable`), before anything is written."""
    t0 = time.perf_counter()
    if config.data.prepared is not None:
        data, stored = load_prepared(config)
        split = stored or make_split(data, config.protocol)
    else:
        data = preprocess_source(config.data)
        split = make_split(data, config.protocol)
    check_usable(data, split)
    return Prepared(data, split, time.perf_counter() - t0, config.data.prepared)


def preprocess_source(cfg: DataConfig) -> SequenceData:
    """Read the configured source and preprocess it; no interaction left raises DataError."""
    interactions = load_interactions(cfg, compact=True)
    n_read = len(interactions.events)
    data = preprocess(interactions, cfg.preprocess_config(), release=True)
    if data.num_interactions == 0:
        raise DataError(f"dataset {data.name}: no interactions to train on ({n_read:,} read from "
                        f"{interactions.source}; 0 left after the filters {_filters(cfg)})")
    return data


#: The ``data`` settings that a prepared dataset fixes (all but the model's history length and the folder).
NOT_PREPARED = ("max_len", "prepared")


def data_settings(cfg: DataConfig) -> dict[str, Any]:
    """The settings of ``cfg`` a prepared dataset records (JSON values)."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in NOT_PREPARED}


def prepared_overrides(folder: str) -> list[str]:
    """``data.KEY=VALUE`` overrides that make a configuration's data those of the prepared dataset ``folder``
    (its recorded settings and ``data.prepared``)."""
    summary = read_summary(folder)
    return [f"data.{k}={json.dumps(v)}" for k, v in summary["data"].items()] + \
        [f"data.prepared={json.dumps(str(folder))}"]


def load_prepared(config: Config) -> tuple[SequenceData, Split | None]:
    """The memory-mapped sequences of ``data.prepared`` and its stored split for ``config.protocol`` (or None).
    A prepared dataset made with other data settings than ``config``'s, or whose arrays do not give the
    fingerprint its summary records, raises DataError naming the folder and the setting."""
    folder = str(config.data.prepared)
    summary = read_summary(folder)
    wanted = data_settings(config.data)
    differ = [f"data.{k}: prepared {summary['data'].get(k)!r}, this run {v!r}" for k, v in wanted.items()
              if summary["data"].get(k) != v]
    if differ:
        raise DataError(f"{folder}: prepared with other data settings than this run's ({'; '.join(differ)}); "
                        "prepare it again with these settings, or drop the conflicting data settings")
    return load_sequences(folder), load_split(folder, config.protocol)


def _filters(cfg: DataConfig) -> str:
    settings = cfg.preprocess_config()
    return ", ".join(f"{key}={getattr(settings, key)!r}" for key in ("behaviors", "duplicates", "min_user_count",
                                                                       "min_item_count"))


def check_usable(data: SequenceData, split: Split) -> None:
    """Raise :class:`~sinerec.errors.DataError` naming the dataset and the counts when ``split`` has no
    training example, or no validation or test query (leave-one-out evaluates users with >= 3 items; comirec
    holds out users with >= 2). A run on such data would report 0 for every metric over 0 users."""
    lengths = data.lengths
    counts = (f"{data.num_users:,} users, {data.num_items:,} items, {data.num_interactions:,} interactions, "
              f"longest sequence {int(lengths.max()) if len(lengths) else 0}")
    protocol = split.protocol.name
    need = "at least one user with 3 or more items" if protocol == "loo" else \
        "enough users with 2 or more items for the validation and test shares"
    if len(split.valid) == 0 or len(split.test) == 0:
        raise DataError(f"dataset {data.name}: nobody can be evaluated under {protocol} ({counts}; "
                        f"{len(split.valid)} validation and {len(split.test)} test users); it needs {need}")
    if len(split.train) == 0:
        raise DataError(f"dataset {data.name}: no training example under {protocol} ({counts}); training needs "
                        "a user with 2 or more items in the training part")
