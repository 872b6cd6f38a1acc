"""One source of settings: train, benchmark and `config show` resolve a model's settings the same way."""

from __future__ import annotations

import json

import pytest

from sinerec.benchmark import model_config
from sinerec.cli import build_parser, main
from sinerec.cli.train import train_config
from sinerec.errors import ConfigError
from sinerec.models import MODELS
from sinerec.settings import resolve, resolve_config


@pytest.mark.parametrize("model", list(MODELS))
def test_train_and_benchmark_resolve_identical_settings(model):
    args = build_parser().parse_args(["train", "--model", model, "--seed", "2021", "--quiet"])
    assert train_config(args).to_dict() == model_config(model, 2021).to_dict()


def test_train_starts_from_the_shipped_file():
    # before: `sinerec train --model caser` used the code defaults, not configs/caser.toml
    args = build_parser().parse_args(["train", "--model", "sasrec"])
    config = train_config(args)
    assert config.model_params.dim == 50 and config.train.batch_size == 128 and config.train.epochs == 10


def test_layers_and_sources(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[train]\nlr = 0.002\nepochs = 4\n[model_params]\ndropout = 0.3\n')
    resolved = resolve("sasrec", file=user, overrides=["train.epochs=7"])
    c, src = resolved.config, resolved.sources
    assert (c.train.lr, c.train.epochs, c.model_params.dropout, c.model_params.dim) == (0.002, 7, 0.3, 50)
    assert src["train.lr"] == f"user file {user}" and src["train.epochs"] == "--set"
    assert src["model_params.dim"] == "configs/sasrec.toml" and src["train.weight_decay"] == "default"
    assert src["model"] == "--model" and set(src) == set(_leaf_keys(c.to_dict()))


def test_the_model_may_come_from_the_user_file_or_an_override(tmp_path):
    user = tmp_path / "m.toml"
    user.write_text('model = "gru4rec"\n')
    assert resolve_config(file=user).model == "gru4rec"
    assert resolve_config("sine", overrides=["model=sasrec"]).model_params.dim == 50
    with pytest.raises(ConfigError, match="model: unknown model 'nope'"):
        resolve_config("nope")


def _leaf_keys(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_config_show_prints_each_setting_with_its_source(capsys, tmp_path):
    assert main(["config", "show", "--model", "sasrec", "--set", "train.lr=0.5"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert lines["key"] == ["key", "value", "source"]
    assert lines["model_params.dim"][1:] == ["50", "configs/sasrec.toml"]
    assert lines["train.lr"][1:] == ["0.5", "--set"]
    assert lines["train.weight_decay"][1:] == ["0.0", "default"]
    assert main(["config", "show", "--model", "sasrec", "--set", "train.amp=off"]) == 0
    assert capsys.readouterr().out.endswith('here: train.device "auto" -> cpu\nhere: train.amp "off" -> float32\n')
    assert main(["config", "show", "--model", "caser", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == {"value": "caser", "source": "--model"}
    assert main(["config", "show", "--set", "train.lr=x"]) == 2
    assert capsys.readouterr().err.strip() == "sinerec: error: train.lr: expected a number, got 'x'"


@pytest.mark.parametrize(("model", "native", "said"), [
    ("sine", True, "bf16 autocast (this CPU computes bf16 in hardware, and it pays for sine)"),
    ("sine", False, "float32"), ("sasrec", True, "float32")])
def test_config_show_says_what_auto_precision_is_here(capsys, monkeypatch, model, native, said):
    from sinerec import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda: native)
    assert main(["config", "show", "--model", model]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f'here: train.amp "auto" -> {said}'
