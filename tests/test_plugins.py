"""Plugin models: a package installed beside sinerec registers a model through the ``sinerec.models`` entry-point
group. Here a real (tiny) distribution is written into tmp_path (a module and its .dist-info folder) and put on
the path, so importlib.metadata finds it as it would find an installed package."""

import json
import textwrap
from importlib.metadata import EntryPoint

import pytest
import torch

from sinerec import models
from sinerec.benchmark import run_benchmark
from sinerec.cli import build_parser, main
from sinerec.config import load_config
from sinerec.errors import ConfigError
from sinerec.runs import load_run

PLUGIN = textwrap.dedent('''
    """A toy plugin model: the user vector is the mean of the history's item embeddings."""
    import dataclasses

    import torch

    from sinerec.models import ModelOutput, SequentialRecommender


    @dataclasses.dataclass
    class MeanPoolConfig:
        dim: int = 8

        def __post_init__(self):
            if self.dim < 1:
                raise ValueError(f"dim must be >= 1, got {self.dim}")


    class MeanPool(SequentialRecommender):
        config_class = MeanPoolConfig

        def __init__(self, num_items, max_len, config):
            super().__init__(num_items)
            self.item_embedding = torch.nn.Embedding(num_items + 1, config.dim, padding_idx=0)

        def forward(self, history, target=None):
            real = (history != 0).unsqueeze(-1)
            return ModelOutput(user=(self.item_embedding(history) * real).sum(1) / real.sum(1).clamp(min=1))

        def item_embeddings(self):
            return self.item_embedding.weight
''')


@pytest.fixture
def registry():
    """MODELS and PLUGINS as they were, after the test."""
    saved, plugins = dict(models.MODELS), dict(models.PLUGINS)
    yield
    models.MODELS.clear()
    models.MODELS.update(saved)
    models.PLUGINS.clear()
    models.PLUGINS.update(plugins)


@pytest.fixture
def installed(tmp_path, monkeypatch, registry):
    """The distribution ``sinerec-meanpool`` on sys.path (and PYTHONPATH, for child processes), loaded."""
    site = tmp_path / "site"
    (site / "sinerec_meanpool_plugin").mkdir(parents=True)
    (site / "sinerec_meanpool_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "sinerec_meanpool-0.1.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: sinerec-meanpool\nVersion: 0.1\n")
    info.joinpath("entry_points.txt").write_text(
        "[sinerec.models]\nmeanpool = sinerec_meanpool_plugin:MeanPool\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    threads = torch.get_num_threads()
    assert models.load_plugins() == ["meanpool"]
    yield site
    torch.set_num_threads(threads)


def test_an_installed_plugin_is_registered_lazily(installed):
    assert models.PLUGINS == {"meanpool": "sinerec_meanpool_plugin:MeanPool"}
    assert models.MODELS["meanpool"] == ("sinerec_meanpool_plugin", "MeanPool", "MeanPool.config_class")
    assert models.model_config_class("meanpool").__name__ == "MeanPoolConfig"
    assert models.load_plugins() == []  # loading again changes nothing and warns of nothing
    with pytest.raises(ConfigError, match=r"model_params.dim: expected an integer, got 'x'"):
        load_config(overrides=["model=meanpool", "model_params.dim=x"])


def test_a_plugin_joins_the_shared_model_suite(installed):
    import test_baselines as suite

    assert "meanpool" in suite.gradient_models() and "meanpool" not in suite.multi_vector_models()
    suite.test_output_shapes("meanpool")
    suite.test_left_padding_is_inert("meanpool")
    suite.test_fully_padded_rows_are_finite("meanpool")
    suite.test_defaults_build("meanpool")


def test_a_plugin_is_a_model_of_sinerec_train(installed, tmp_path, capsys):
    model_help = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                      if a.dest == "model").help
    assert model_help.endswith(", meanpool")
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{(u * 3 + t) % 11},{t}\n"
                                                             for u in range(20) for t in range(7)))
    out = tmp_path / "run"
    assert main(["train", "--model", "meanpool", "--path", str(csv), "--format", "table", "--out", str(out),
                 "--quiet", "--epochs", "1", "--threads", "1", "--set", "model_params.dim=4"]) == 0
    assert json.loads((out / "metrics.json").read_text())["model"] == "meanpool"
    run = load_run(out)
    assert run.model.item_embedding.weight.shape == (12, 4)


def test_a_plugin_is_benchmarked_in_a_child_process_from_its_defaults(installed, tmp_path):
    from sinerec.data.preprocess import preprocess
    from sinerec.data.splits import ProtocolConfig, make_split
    from sinerec.data.synthetic import planted_concepts
    from sinerec.pipeline import Prepared

    data = preprocess(planted_concepts(n_users=40, n_items=24, n_concepts=3, length=9, seed=3))
    prepared = Prepared(data, make_split(data, ProtocolConfig(name="loo")), 0.0)
    result = run_benchmark(["meanpool"], out_dir=tmp_path / "bench", seeds=[0], prepared=prepared, quick=True,
                           overrides=["train.threads=1", "train.batch_size=32"], log=lambda line: None)
    doc = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert doc["ranking"] == ["meanpool"] and result is not None
    config = json.loads((tmp_path / "bench" / "runs" / "meanpool-seed0" / "config.json").read_text())
    assert config["model"] == "meanpool" and config["model_params"] == {"dim": 8}


def test_a_plugin_cannot_replace_a_model_and_a_bad_one_is_a_clear_error(registry):
    sine = models.MODELS["sine"]
    with pytest.warns(UserWarning, match=r"entry point sine = 'evil:SINE' \(sinerec.models\): a model 'sine'"):
        assert models.load_plugins([EntryPoint("sine", "evil:SINE", "sinerec.models")]) == []
    assert models.MODELS["sine"] == sine and "sine" not in models.PLUGINS
    with pytest.warns(UserWarning, match="expected 'package.module:Class'"):
        assert models.load_plugins([EntryPoint("odd", "just_a_module", "sinerec.models")]) == []
    assert models.load_plugins([EntryPoint("gone", "no_such_module_x:Model", "sinerec.models"),
                                EntryPoint("noconf", "sinerec.models.base:SequentialRecommender", "sinerec.models"),
                                EntryPoint("notamodel", "sinerec.config:Config", "sinerec.models")]) == [
        "gone", "noconf", "notamodel"]
    with pytest.raises(ConfigError, match=r"model: 'gone' is not available .*plugin 'no_such_module_x:Model'.*"
                                          r"No module named 'no_such_module_x'"):
        models.model_class("gone")
    with pytest.raises(ConfigError, match=r"'noconf' \(plugin .*has no attribute 'config_class'"):
        models.model_config_class("noconf")
    with pytest.raises(ConfigError, match=r"'notamodel' .*is not a SequentialRecommender subclass"):
        models.model_class("notamodel")
