"""Model registry: name -> (module, model class, config dataclass), imported lazily.

Every model module defines a config dataclass (fields with defaults, typed) and a model class
``Model(num_items: int, max_len: int, config: ModelConfig)`` deriving from
:class:`sinerec.models.base.SequentialRecommender`.

Plugins: another installed package registers a model under the entry-point group ``sinerec.models``::

    [project.entry-points."sinerec.models"]
    my-model = "my_package.model:MyModel"     # MyModel.config_class is its config dataclass

The registry loads them when this module is imported (:func:`load_plugins`); a plugin model is then a
``--model`` of ``sinerec train``, a model of ``sinerec benchmark`` (from its config's defaults: it has no
settings file shipped with sinerec) and part of the shared model test suite, which is generated from
:data:`MODELS`. A plugin cannot replace a built-in model (or an earlier plugin of that name): it is skipped
with a warning.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Iterable
from functools import reduce
from typing import Any

from sinerec.errors import ConfigError
from sinerec.models.base import ModelOutput, SequentialRecommender

__all__ = ["ENTRY_POINT_GROUP", "MODELS", "PLUGINS", "ModelOutput", "SequentialRecommender", "build_model",
           "load_plugins", "model_class", "model_config_class"]

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


#: the entry-point group of plugin models
ENTRY_POINT_GROUP = "sinerec.models"

#: plugin model name -> its entry point's value ("package.module:Class")
PLUGINS: dict[str, str] = {}


def load_plugins(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> list[str]:
    """Register the models of the entry points (default: the installed packages' ``sinerec.models`` group);
    returns the names added. Nothing is imported until a model is used; a name already registered or a
    value that is not ``module:Class`` is skipped with a warning."""
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    added = []
    for ep in entry_points:
        module, _, attr = ep.value.partition(":")
        where = f"entry point {ep.name} = {ep.value!r} ({ENTRY_POINT_GROUP})"
        if ep.name in MODELS:
            if PLUGINS.get(ep.name) != ep.value:
                warnings.warn(f"{where}: a model {ep.name!r} is already registered; the plugin is skipped",
                              stacklevel=2)
            continue
        if not module.strip() or not attr.strip() or " " in ep.value:
            warnings.warn(f"{where}: expected 'package.module:Class'; the plugin is skipped", stacklevel=2)
            continue
        MODELS[ep.name] = (module, attr, f"{attr}.config_class")
        PLUGINS[ep.name] = ep.value
        added.append(ep.name)
    return added


def _lookup(name: str) -> tuple[Any, Any]:
    if name not in MODELS:
        raise ConfigError(f"model: unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    module_name, cls_name, cfg_name = MODELS[name]
    where = f" (plugin {PLUGINS[name]!r})" if name in PLUGINS else ""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a registered model whose file is not written yet, or a broken plugin
        raise ConfigError(f"model: {name!r} is not available in this version{where} ({exc})") from exc
    try:
        cls = reduce(getattr, cls_name.split("."), module)
        if not (isinstance(cls, type) and issubclass(cls, SequentialRecommender)):
            raise ConfigError(f"model: {name!r}{where}: {cls!r} is not a SequentialRecommender subclass")
        cfg = reduce(getattr, cfg_name.split("."), module)
    except AttributeError as exc:
        raise ConfigError(f"model: {name!r}{where}: {exc} (a model class needs a config_class)") from None
    return cls, cfg


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


load_plugins()
