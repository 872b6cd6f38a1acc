import pytest

from sinerec.config import load_config
from sinerec.errors import ConfigError


def test_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('model = "mostpop"\n[train]\nlr = 0.01\nepochs = 3\n[eval]\nks = [5, 10]\n')
    c = load_config(file=f, overrides=["train.epochs=7", "data.behaviors=pv,buy", "train.monitor=HR@5"])
    assert c.model == "mostpop"
    assert c.train.lr == 0.01 and c.train.epochs == 7
    assert c.eval.ks == (5, 10)
    assert c.data.behaviors == ("pv", "buy")
    assert c.data.max_len == 20  # untouched default


def test_model_params_are_typed_per_model():
    c = load_config(overrides=["model=sine", "model_params.num_concepts=64", "model_params.variant=official"])
    assert c.model_params.num_concepts == 64 and c.model_params.variant == "official"
    assert c.to_dict()["model_params"]["num_concepts"] == 64


@pytest.mark.parametrize("override, message", [
    ("train.lr=abc", "train.lr: expected a number, got 'abc'"),
    ("train.epochs=1.5", "train.epochs: expected an integer, got 1.5"),
    ("train.nope=1", "train.nope: unknown setting"),
    ("train.loss=hinge", "train.loss: expected 'full' or 'sampled', got 'hinge'"),
    ("protocol.name=random", "protocol.name"),
    ("model=transformer", "unknown model 'transformer'"),
    ("model_params.num_concepts=x", "model_params.num_concepts: expected an integer"),
    ("train.monitor=HR@7", "train.monitor: 'HR@7' is not one of the computed metrics"),
    ("train.monitor=HR@ten", "train.monitor: 'HR@ten' is not one of the computed metrics"),
    ("train.monitor=HR", "train.monitor: 'HR' is not one of the computed metrics"),
    ("data.header=maybe", "data.header: expected true or false, got 'maybe'"),
    ("noequals", "expected key=value"),
    ("bogus.x=1", "unknown config section"),
    ("eval.metrics=HR,Precision", "eval.metrics: unknown metric 'Precision'; choose from HR, Recall, NDCG, MRR"),
    ("eval.metrics=[]", "eval.metrics: name at least one metric, got ()"),
    ("eval.ks=[10,0]", "eval.ks: every cut-off must be an integer >= 1, got 0"),
    ("eval.ks=[]", "eval.ks: give at least one cut-off, got ()"),
    ("eval.batch_size=0", "eval.batch_size: must be an integer >= 1, got 0"),
    ("eval.item_chunk=-5", "eval.item_chunk: must be an integer >= 1, got -5"),
])
def test_bad_values_name_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(overrides=[override])


def test_config_roundtrip_through_dict():
    c = load_config(overrides=["model=mostpop", "eval.ks=[1,2]", "train.monitor=NDCG@2"])
    again = load_config(c.to_dict())
    assert again == c


SAME_SETTINGS = {
    "toml": 'model = "mostpop"\n[train]\nlr = 0.01\nepochs = 3\n[eval]\nks = [5, 10]\n[data]\nbehaviors = ["pv"]\n',
    "json": '{"model": "mostpop", "train": {"lr": 0.01, "epochs": 3}, "eval": {"ks": [5, 10]},'
            ' "data": {"behaviors": ["pv"]}}',
    "yaml": "model: mostpop\ntrain:\n  lr: 0.01\n  epochs: 3\neval:\n  ks: [5, 10]\ndata:\n  behaviors: [pv]\n",
    "yml": "model: mostpop\ntrain: {lr: 0.01, epochs: 3}\neval: {ks: [5, 10]}\ndata: {behaviors: [pv]}\n",
}


@pytest.mark.parametrize("suffix", list(SAME_SETTINGS))
def test_toml_json_and_yaml_files_give_the_same_config(tmp_path, suffix):
    f = tmp_path / f"c.{suffix}"
    f.write_text(SAME_SETTINGS[suffix])
    c = load_config(file=f, overrides=["train.epochs=7"])
    reference = tmp_path / "ref.toml"
    reference.write_text(SAME_SETTINGS["toml"])
    assert c.to_dict() == load_config(file=reference, overrides=["train.epochs=7"]).to_dict()
    assert c.model == "mostpop" and c.train.lr == 0.01 and c.train.epochs == 7 and c.eval.ks == (5, 10)
    assert c.data.behaviors == ("pv",) and c.data.max_len == 20


@pytest.mark.parametrize("name, text, message", [
    ("bad.json", '{"train": {"lr": 0.01,}', r"bad\.json: cannot parse"),
    ("bad.yaml", "train:\n  lr: [0.01\n", r"bad\.yaml: cannot parse"),
    ("typed.yaml", "train:\n  lr: fast\n", r"train\.lr: expected a number, got 'fast'"),
    ("c.ini", "[train]\nlr = 0.01\n", r"unknown config format '\.ini'"),
    ("empty.yaml", "", None),
])
def test_config_file_errors_name_the_file_or_key(tmp_path, name, text, message):
    f = tmp_path / name
    f.write_text(text)
    if message is None:  # an empty YAML file is the defaults
        assert load_config(file=f).to_dict() == load_config().to_dict()
        return
    with pytest.raises(ConfigError, match=message):
        load_config(file=f)


def test_cli_train_reads_a_yaml_config(tmp_path, capsys):
    import json

    from sinerec.cli import main

    f = tmp_path / "c.yaml"
    f.write_text("model: mostpop\neval:\n  ks: [10, 50]\n")
    assert main(["train", "--config", str(f), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == "mostpop" and saved["eval"]["ks"] == [10, 50]
    assert set(json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]) == \
        {f"{m}@{k}" for m in ("HR", "Recall", "NDCG", "MRR") for k in (10, 50)}
