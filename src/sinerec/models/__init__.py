"""Model registry: name -> (module, model class, config dataclass), imported lazily.

Every model module defines a config dataclass (fields with defaults, typed) and a model class
``Model(num_items: int, max_len: int, config: ModelConfig)`` deriving from
:class:`sinerec.models.base.SequentialRecommender`.
"""

from __future__ import annotations

import importlib
from typing import Any

from sinerec.errors import ConfigError
from sinerec.models.base import ModelOutput, SequentialRecommender

__all__ = ["MODELS", "ModelOutput", "SequentialRecommender", "build_model", "model_class", "model_config_class"]

#: name -> (module, class name, config class name)
MODELS: dict[str, tuple[str, str, str]] = {
    "mostpop": ("sinerec.models.mostpop", "MostPop", "MostPopConfig"),
    "sine": ("sinerec.models.sine", "SINE", "SINEConfig"),
    "youtubednn": ("sinerec.models.youtubednn", "YouTubeDNN", "YouTubeDNNConfig"),
    "gru4rec": ("sinerec.models.gru4rec", "GRU4Rec", "GRU4RecConfig"),
    "caser": ("sinerec.models.caser", "Caser", "CaserConfig"),
    "sasrec": ("sinerec.models.sasrec", "SASRec", "SASRecConfig"),
    "mind": ("sinerec.models.mind", "MIND", "MINDConfig"),
    "comirec-sa": ("sinerec.models.comirec", "ComiRecSA", "ComiRecConfig"),
    "comirec-dr": ("sinerec.models.comirec", "ComiRecDR", "ComiRecConfig"),
}


def _lookup(name: str) -> tuple[Any, Any]:
    if name not in MODELS:
        raise ConfigError(f"model: unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    module_name, cls_name, cfg_name = MODELS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # a registered model whose file is not written yet
        raise ConfigError(f"model: {name!r} is not available in this version ({exc})") from exc
    return getattr(module, cls_name), getattr(module, cfg_name)


def model_class(name: str) -> type[SequentialRecommender]:
    """The model class of model ``name`` (its flags, e.g. ``trainable``, without building one)."""
    cls: type[SequentialRecommender] = _lookup(name)[0]
    return cls


def model_config_class(name: str) -> type:
    """The config dataclass of model ``name``."""
    return _lookup(name)[1]


def build_model(name: str, num_items: int, max_len: int, config: Any) -> SequentialRecommender:
    """Instantiate model ``name`` for items 1..num_items and histories of length max_len."""
    cls, _ = _lookup(name)
    return cls(num_items, max_len, config)
