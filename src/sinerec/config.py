"""One typed configuration tree: a file (TOML, JSON or YAML) plus ``key=value`` overrides.

    model = "sine"
    [data]      dataset, files, filters, history length T
    [protocol]  loo | comirec and its settings
    [train]     optimiser, epochs, early stopping, loss, device
    [eval]      cut-offs and batch sizes
    [model_params]  the chosen model's own dataclass (e.g. sinerec.models.sine.SINEConfig)

Nothing else in the package reads configuration. Unknown keys and ill-typed values raise ConfigError naming
the key and the value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinerec.data.formats import FORMATS
from sinerec.data.preprocess import PreprocessConfig
from sinerec.data.splits import ProtocolConfig
from sinerec.errors import ConfigError
from sinerec.evaluate import EvalConfig
from sinerec.models import model_config_class

#: The largest seed torch and numpy take (``train.seed``, ``protocol.seed``): seeds are 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
#: What ``train.device`` may name: auto, cpu, cuda, cuda:N (also mps, where torch has it).
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass
class DataConfig:
    """Which data, and the filters applied before splitting."""

    dataset: str = "ml-latest-small"  # a built-in name (see `sinerec datasets`), or "custom" with `path`
    data_dir: str | None = None  # folder holding the dataset's files (instead of the cache / download)
    path: str | None = None  # custom: the interaction file
    format: str | None = None  # custom: a key of sinerec.data.formats.FORMATS (`sinerec train --help`)
    item_path: str | None = None  # custom: item file (.item, item,category file, or item2attributes.json)
    user_col: str = "user_id"  # table/parquet column names (or 0-based positions when header = false)
    item_col: str = "item_id"
    timestamp_col: str | None = "timestamp"
    category_col: str | None = None
    behavior_col: str | None = None
    sep: str = ","
    header: bool = True
    skip_bad_lines: bool = False
    behaviors: tuple[str, ...] | None = None  # keep only these behaviour types
    duplicates: str = "keep"  # keep | first | last, for repeated (user, item) pairs
    min_user_count: int = 0
    min_item_count: int = 0
    kcore_iterative: bool = True
    max_len: int = 20  # T: items of history the model sees
    prepared: str | None = None  # a prepared dataset (`sinerec data prepare`): read instead of the settings above

    def __post_init__(self) -> None:
        if self.max_len < 1:
            raise ConfigError(f"data.max_len: must be >= 1, got {self.max_len!r}")
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"data.format: unknown format {self.format!r}; choose from {', '.join(FORMATS)}")
        self.preprocess_config()  # its settings are validated where they are declared, but now, not at reading

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(behaviors=self.behaviors, duplicates=self.duplicates,
                                min_user_count=self.min_user_count, min_item_count=self.min_item_count,
                                kcore_iterative=self.kcore_iterative)


@dataclass
class TrainConfig:
    """Optimisation, early stopping and the loss."""

    epochs: int = 30
    # Global: the examples of one optimisation step summed over all processes (torchrun); each of N
    # processes takes batch_size / N of them, so a run means the same whatever the number of processes.
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = None
    patience: int = 3  # epochs without improvement of `monitor` on validation before stopping
    monitor: str = "NDCG@10"
    eval_every: int = 1  # epochs between validation runs
    loss: str = "full"  # full | sampled
    num_negatives: int = 1000  # sampled softmax: negatives shared by a batch
    sampler: str = "popularity"  # popularity | log-uniform
    sampler_power: float = 1.0  # popularity sampler: p ~ count ** power
    seed: int = 2021
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch CPU threads (None: the usable CPUs, sinerec.runtime)
    max_steps_per_epoch: int | None = None  # cap an epoch (quick runs, tests)
    progress: bool = True
    amp: str = "auto"  # auto (bf16 on CUDA; on CPUs with bf16 in hardware for models that gain) | bf16 | off
    compile: bool = False  # torch.compile the training loss (model + loss) module
    prefetch: int | None = None  # batches a background thread prepares ahead (None: 2 on CUDA, 0 on CPU)
    # adam (dense, fused) | lazy-adam (sparse item tables, row-wise Adam: sinerec.optim; sampled softmax only)
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "patience", "eval_every", "num_negatives"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}: must be >= 1, got {getattr(self, key)!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"train.lr: must be a finite number > 0, got {self.lr!r}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay: must be a finite number >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError(f"train.grad_clip: must be a finite number > 0 (or none), got {self.grad_clip!r}")
        if not math.isfinite(self.sampler_power):
            raise ConfigError(f"train.sampler_power: must be a finite number, got {self.sampler_power!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"train.seed: must be in 0..{MAX_SEED}, got {self.seed!r}")
        if not DEVICE_RE.fullmatch(self.device):
            raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"train.max_steps_per_epoch: must be >= 1 (or none), got {self.max_steps_per_epoch!r}")
        if self.loss not in ("full", "sampled"):
            raise ConfigError(f"train.loss: expected 'full' or 'sampled', got {self.loss!r}")
        if self.sampler not in ("popularity", "log-uniform"):
            raise ConfigError(f"train.sampler: expected 'popularity' or 'log-uniform', got {self.sampler!r}")
        if self.optimizer not in ("adam", "lazy-adam"):
            raise ConfigError(f"train.optimizer: expected 'adam' or 'lazy-adam', got {self.optimizer!r}")
        if self.optimizer == "lazy-adam" and self.loss != "sampled":
            raise ConfigError("train.optimizer: 'lazy-adam' updates only the item rows a step touches and needs "
                              f"train.loss = 'sampled' (train.loss = {self.loss!r} scores every item: use 'adam')")
        if self.optimizer == "lazy-adam" and self.compile:
            raise ConfigError("train.optimizer: 'lazy-adam' (sparse gradients) does not go with train.compile = true")
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"train.amp: expected 'auto', 'bf16' or 'off', got {self.amp!r}")
        if self.prefetch is not None and self.prefetch < 0:
            raise ConfigError(f"train.prefetch: must be >= 0, got {self.prefetch!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"train.threads: must be >= 1, got {self.threads!r}")


@dataclass
class Config:
    model: str = "sine"
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model_params: Any = None  # the model's config dataclass, filled in by `load_config`

    def __post_init__(self) -> None:
        cls = model_config_class(self.model)
        if self.model_params is None:
            self.model_params = cls()
        elif isinstance(self.model_params, dict):
            self.model_params = _from_dict(cls, self.model_params, "model_params")
        name, _, cutoff = self.train.monitor.partition("@")
        if name not in self.eval.metrics or not cutoff.isdigit() or int(cutoff) not in self.eval.ks:
            raise ConfigError(f"train.monitor: {self.train.monitor!r} is not one of the computed metrics "
                              f"({', '.join(self.eval.metrics)} at {', '.join(map(str, self.eval.ks))})")

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))


def _to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_jsonable(v) for v in x]
    return x


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(inner, v, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _from_dict(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{prefix}.{key}: unknown setting (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix}: {exc}") from exc


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start}); save the config file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError('reading YAML configs needs PyYAML: pip install "sinerec[yaml]"') from None
            return yaml.safe_load(text) or {}
    except ConfigError:
        raise
    except Exception as exc:  # every parser has its own error type
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    raise ConfigError(f"{path}: unknown config format {path.suffix!r} (use .toml, .json or .yaml)")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01). Values are read as JSON when they parse, else text."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.lr=0.001")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    node = base
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a section")
    node[path[-1]] = value


SECTIONS: dict[str, type] = {"data": DataConfig, "protocol": ProtocolConfig, "train": TrainConfig,
                             "eval": EvalConfig}


def load_config(values: dict[str, Any] | None = None, file: str | Path | None = None,
                overrides: list[str] | None = None) -> Config:
    """Build a validated Config: defaults <- file <- ``values`` (nested dict) <- ``overrides`` ("a.b=v")."""
    tree: dict[str, Any] = {}
    if file is not None:
        tree = read_config_file(file)
    for key, value in _flatten(values or {}):
        merge(tree, key, value)
    for text in overrides or []:
        merge(tree, *parse_override(text))
    tree.pop("tune", None)  # the search space of `sinerec tune` (sinerec.tune): not a training setting
    unknown = set(tree) - set(SECTIONS) - {"model", "model_params"}
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; known: model, model_params, "
                          f"{', '.join(SECTIONS)}")
    model = tree.get("model", "sine")
    if not isinstance(model, str):
        raise ConfigError(f"model: expected a model name, got {model!r}")
    sections = {}
    for name, cls in SECTIONS.items():
        section = tree.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{name}: expected a section (table), got {section!r}")
        sections[name] = _from_dict(cls, section, name)
    params = tree.get("model_params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"model_params: expected a section (table), got {params!r}")
    return Config(model=model, model_params=dict(params), **sections)


def _flatten(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[list[str], Any]]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and key in (*SECTIONS, "model_params") and not prefix:
            out.extend(_flatten(value, (key,)))
        else:
            out.append(([*prefix, key], value))
    return out


def config_from_run(saved: dict[str, Any]) -> Config:
    """Rebuild a Config from the ``config.json`` a run directory holds."""
    saved = dict(saved)
    return load_config(saved)
