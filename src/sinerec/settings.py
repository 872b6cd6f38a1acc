"""One source of a model's settings: what ``sinerec train``, ``sinerec benchmark``, ``sinerec config show`` and
``sinerec.fit`` all resolve through.

Layers, each overriding the one before, key by key:

    default        the dataclasses of ``sinerec.config`` (and the model's ``model_params`` dataclass)
    shipped file   ``sinerec/configs/MODEL.toml`` (the paper's settings where the paper gives them)
    user file      ``--config FILE`` (TOML, JSON or YAML)
    values         a nested dict from the caller (the benchmark's data/protocol options, ``sinerec.fit``)
    --set          ``key=value`` overrides (the command line's flags become overrides too)

The model is the first of: a ``model=...`` override, the explicit ``model`` (``--model``), the values'
``model``, the user file's ``model``, ``"sine"``; its shipped file is the second layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sinerec.config import Config, load_config, parse_override, read_config_file
from sinerec.errors import ConfigError
from sinerec.models import MODELS, PLUGINS

__all__ = ["DEFAULT_MODEL", "Resolved", "leaves", "resolve", "resolve_config", "shipped_config_path"]

DEFAULT_MODEL = "sine"


def shipped_config_path(model: str) -> Path | None:
    """The settings file shipped for ``model`` (``sinerec/configs/MODEL.toml``); None for a plugin model
    (registered through the ``sinerec.models`` entry points), which starts from its config's defaults."""
    if model not in MODELS:
        raise ConfigError(f"model: unknown model {model!r}; choose from {', '.join(MODELS)}")
    if model in PLUGINS:
        return None
    path = Path(str(resources.files("sinerec") / "configs" / f"{model}.toml"))
    if not path.is_file():
        raise ConfigError(f"model: no shipped settings for {model!r} ({path} is missing)")
    return path


@dataclass
class Resolved:
    """A resolved configuration and, for every leaf key (``train.lr``), the layer that set it."""

    config: Config
    sources: dict[str, str]


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (dicts are walked to their leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(leaves(value, name + "."))
        else:
            out[name] = value
    return out


def _merge_tree(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, section by section (as ``load_config`` merges a file and values)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def _model_of(model: str | None, overrides: Sequence[str], user: dict[str, Any],
              values: dict[str, Any]) -> str:
    for text in reversed(list(overrides)):
        path, value = parse_override(text)
        if path == ["model"]:
            return str(value)
    if model is not None:
        return model
    for layer in (values, user):
        if "model" in layer:
            return str(layer["model"])
    return DEFAULT_MODEL


def resolve(model: str | None = None, *, file: str | Path | None = None, values: dict[str, Any] | None = None,
            overrides: Sequence[str] = ()) -> Resolved:
    """The configuration of ``model`` from the layers of the module docstring, with each key's source.

    Raises ConfigError for an unknown model, a missing or bad file, or a bad key or value (naming it).
    """
    user = read_config_file(file) if file is not None else {}
    values = dict(values or {})
    name = _model_of(model, overrides, user, values)
    shipped_path = shipped_config_path(name)
    shipped = read_config_file(shipped_path) if shipped_path is not None else {}
    layers: list[tuple[str, dict[str, Any]]] = [
        (f"configs/{name}.toml", shipped), (f"user file {file}", user), ("values", values)]
    tree: dict[str, Any] = {}
    for _, layer in layers:
        tree = _merge_tree(tree, layer)
    tree["model"] = name
    config = load_config(tree, overrides=list(overrides))
    sources = {key: "default" for key in leaves(load_config({"model": name}).to_dict())}
    for label, layer in layers:
        for key in leaves(layer):
            sources[key] = label
    for text in overrides:
        sources[".".join(parse_override(text)[0])] = "--set"
    if model is not None and sources.get("model") != "--set":
        sources["model"] = "--model"
    keys = leaves(config.to_dict())
    return Resolved(config, {key: sources.get(key, "default") for key in keys})


def resolve_config(model: str | None = None, *, file: str | Path | None = None,
                   values: dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> Config:
    """:func:`resolve`'s configuration alone."""
    return resolve(model, file=file, values=values, overrides=overrides).config
