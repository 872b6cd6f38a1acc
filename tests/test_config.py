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
