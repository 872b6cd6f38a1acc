"""The benchmark plan: which runs (models x seeds) with which settings.

Each model's settings are resolved as ``sinerec train`` resolves them (``sinerec.settings``): the settings
file shipped with the package (``sinerec/configs/MODEL.toml``, the paper's settings where the paper gives
them; a plugin model, see ``sinerec.models``, starts from its config's defaults), then the benchmark's data
and protocol options, then the caller's overrides: ``key=value`` for every model, ``MODEL:key=value`` for
one; ``train.seed`` is the run's seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinerec.config import Config
from sinerec.errors import ConfigError
from sinerec.models import MODELS
from sinerec.settings import resolve_config, shipped_config_path

__all__ = ["QUICK", "RunSpec", "check_same_data", "model_config", "run_name",
           "shipped_config_path", "split_overrides"]

#: Train settings of ``quick=True``: a smoke run of the whole pipeline, not a measurement.
QUICK = {"epochs": 1, "max_steps_per_epoch": 20}


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``["train.lr=0.01", "sasrec:model_params.dropout=0.5"]`` -> (every model's, {model: its own}).

    A prefix before ``:`` in the key names a registered model; an unknown model name is an error, a known
    model that is not benchmarked is ignored (so one command line can carry settings for a full run).
    """
    common: list[str] = []
    scoped: dict[str, list[str]] = {}
    for text in overrides:
        key = text.split("=", 1)[0]
        if ":" in key:
            model, rest = text.split(":", 1)
            if model not in MODELS:
                raise ConfigError(f"override {text!r}: {model!r} is not a model ({', '.join(MODELS)})")
            scoped.setdefault(model, []).append(rest)
            key = rest.split("=", 1)[0]
        else:
            common.append(text)
        if key.strip() == "model":
            raise ConfigError(f"override {text!r}: choose the benchmark's models with `models`, not `model`")
    return common, scoped


def model_config(model: str, seed: int, data: dict[str, Any] | None = None,
                 protocol: str | dict[str, Any] | None = None, overrides: Sequence[str] = (), quick: bool = False,
                 threads: int | None = None) -> Config:
    """One run's settings: shipped file <- data/protocol/quick/threads <- overrides <- ``train.seed = seed``.

    ``data`` holds ``data`` section values (e.g. ``{"dataset": "ml-1m", "data_dir": "..."}``), ``protocol`` a
    protocol name or ``protocol`` section values; ``overrides`` may hold ``MODEL:key=value`` items (see
    :func:`split_overrides`).
    """
    common, scoped = split_overrides(overrides)
    values: dict[str, Any] = {"model": model, "data": dict(data or {}), "train": {"progress": False}}
    if protocol is not None:
        values["protocol"] = {"name": protocol} if isinstance(protocol, str) else dict(protocol)
    if quick:
        values["train"].update(QUICK)
    if threads is not None:
        values["train"]["threads"] = threads
    forced = [f"train.seed={seed}", "train.progress=false"]
    if model not in MODELS:
        raise ConfigError(f"benchmark: unknown model {model!r}; choose from {', '.join(MODELS)}")
    return resolve_config(model, values=values, overrides=common + scoped.get(model, []) + forced)


def check_same_data(configs: dict[str, Config]) -> None:
    """Every model must see the same data and split: ``data`` (except ``max_len``) and ``protocol`` agree."""
    def data_key(c: Config) -> dict[str, Any]:
        d = c.to_dict()
        return {"data": {k: v for k, v in d["data"].items() if k != "max_len"}, "protocol": d["protocol"]}

    names = list(configs)
    ref = data_key(configs[names[0]])
    for name in names[1:]:
        other = data_key(configs[name])
        if other != ref:
            diff = [f"{sec}.{k}" for sec in ref for k in ref[sec] if ref[sec][k] != other[sec].get(k)]
            raise ConfigError(f"benchmark: {name} and {names[0]} would see different data or splits "
                              f"({', '.join(diff)}); data and protocol settings must be the same for every "
                              "model (only data.max_len may differ)")


def run_name(model: str, seed: int) -> str:
    """The folder name of a (model, seed) run under ``OUT/runs``."""
    return f"{model}-seed{seed}"


@dataclass
class RunSpec:
    """One planned run: a model, a seed, its settings and its run directory."""

    model: str
    seed: int
    config: Config
    run_dir: Path

    @property
    def log_path(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".log")
