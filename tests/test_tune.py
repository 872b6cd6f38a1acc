"""``sinerec tune``: the search space's validation, pruning through the training callback, the TOML of the best
settings read back, and a real study on ml-latest-small that a second invocation resumes."""

import json

import optuna
import pytest
import torch

from sinerec import tune as tuning
from sinerec.cli import main
from sinerec.config import load_config
from sinerec.errors import ConfigError

SPACE = """
[tune]
"model_params.num_concepts" = {type = "int", low = 4, high = 8}
"train.lr" = {type = "float", low = 1e-4, high = 1e-2, log = true}
"model_params.num_interests" = {type = "categorical", choices = [1, 2]}
"""

CONFIG = """model = "sine"
[data]
max_len = 10
[train]
epochs = 2
max_steps_per_epoch = 2
batch_size = 64
threads = 1
[model_params]
dim = 8
""" + SPACE


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()  # the job sets train.threads for the whole process
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("section", "message"), [
    ({}, "tune: expected a [tune] section"),
    ({"train.lr": 0.1}, "tune.train.lr: expected a table"),
    ({"train.lr": {"type": "normal"}}, "tune.train.lr.type: expected 'int', 'float' or 'categorical', got 'normal'"),
    ({"train.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "tune.train.lr: low (0.1) must be below high (0.01)"),
    ({"train.epochs": {"type": "int", "low": 1.5, "high": 3}}, "tune.train.epochs.low: expected an integer, got 1.5"),
    ({"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "log = true needs low > 0, got 0"),
    ({"a": {"type": "categorical", "choices": []}}, "tune.a.choices: expected a non-empty list, got []"),
    ({"a": {"type": "categorical", "choices": [1], "low": 0}}, "tune.a: unknown field(s) ['low'] for type"),
])
def test_a_bad_search_space_names_key_and_value(section, message):
    with pytest.raises(ConfigError) as exc:
        tuning.read_space(section)
    assert message in str(exc.value)


def test_a_space_key_that_is_no_setting_fails_before_any_trial(tmp_path):
    space = tuning.read_space({"train.lrr": {"type": "float", "low": 0.1, "high": 0.2}})
    with pytest.raises(ConfigError, match=r"tune.train.lrr: train.lrr: unknown setting"):
        tuning.tune({}, space, tmp_path / "study", 1)
    assert not (tmp_path / "study").exists()


def test_pruning_callback_reports_each_validation_and_stops_when_the_pruner_says():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    first = study.ask()
    callback = tuning.PruningCallback(first, "NDCG@10")
    callback.on_epoch_end(1, {"loss": 1.0})  # no validation this epoch: nothing reported
    callback.on_epoch_end(2, {"loss": 1.0, "valid": {"NDCG@10": 0.30}})
    assert first.storage.get_trial(first._trial_id).intermediate_values == {2: 0.30}
    assert not callback.should_stop()
    study.tell(first, 0.30)
    worse = tuning.PruningCallback(study.ask(), "NDCG@10")
    worse.on_epoch_end(2, {"valid": {"NDCG@10": 0.31}})
    assert not worse.should_stop()  # above the median of step 2
    worse.on_epoch_end(3, {"valid": {"NDCG@10": 0.10}})  # step 3: no other trial reported it yet
    assert not worse.should_stop()
    low = tuning.PruningCallback(study.ask(), "NDCG@10")
    low.on_epoch_end(2, {"valid": {"NDCG@10": 0.29}})
    assert low.should_stop() and low.pruned_at == 2


def test_best_toml_reads_back_as_the_same_configuration(tmp_path):
    config = load_config(overrides=["data.timestamp_col=null", "train.lr=0.00031", "eval.ks=[5,10]",
                                    "train.grad_clip=2.5", 'data.sep="\\t"'])
    assert config.data.timestamp_col is None and config.data.sep == "\t"
    path = tmp_path / "best.toml"
    path.write_text(tuning.to_toml(config.to_dict()))
    assert load_config(file=path).to_dict() == config.to_dict()


def study_trials(out):
    study = optuna.load_study(study_name=tuning.STUDY_NAME, storage=f"sqlite:///{out / tuning.STUDY_DB}")
    return study, study.get_trials()


def test_tune_a_three_trial_study_on_ml_latest_small_resumes(tmp_path, capsys):
    config, out = tmp_path / "search.toml", tmp_path / "study"
    config.write_text(CONFIG)
    assert main(["tune", "--config", str(config), "--out", str(out), "--trials", "2"]) == 0
    study, trials = study_trials(out)
    assert [t.number for t in trials] == [0, 1] and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    first = json.loads((out / tuning.BEST_JSON).read_text())
    study.ask()  # trial 2: a process that died while training it

    assert main(["tune", "--config", str(config), "--out", str(out), "--trials", "3"]) == 0
    printed = capsys.readouterr().out
    study, trials = study_trials(out)
    assert [t.number for t in trials] == [0, 1, 2, 3]  # resumed: the study grew, it did not restart
    assert trials[2].state.name == "FAIL" and trials[3].state.name in ("COMPLETE", "PRUNED")
    assert [t.params for t in trials[:2]] == [t.params for t in study_trials(out)[1][:2]]
    best = json.loads((out / tuning.BEST_JSON).read_text())
    assert best["trials"]["complete"] + best["trials"]["pruned"] == 3 and best["trials"]["fail"] == 1
    assert best["value"] >= first["value"] and best["value"] == study.best_value
    assert best["params"] == study.best_trial.params and best["metric"] == "valid NDCG@10"
    assert set(best["params"]) == {"model_params.num_concepts", "train.lr", "model_params.num_interests"}
    # the best trial is a complete run directory whose validation metric is the study's value
    metrics = json.loads((tmp_path / "study" / "trials" / f"trial-{best['trial']:04d}" / "metrics.json").read_text())
    assert best["run_dir"] == str(out / "trials" / f"trial-{best['trial']:04d}")
    assert metrics["valid"]["NDCG@10"] == pytest.approx(best["value"])
    assert metrics["dataset"]["name"] == "ml-latest-small"
    # best.toml trains the best settings as they are
    settings = load_config(file=out / tuning.BEST_TOML)
    assert settings.model_params.num_concepts == best["params"]["model_params.num_concepts"]
    assert settings.train.lr == best["params"]["train.lr"] and settings.model_params.dim == 8
    assert settings.to_dict() == json.loads((tmp_path / best["run_dir"] / "config.json").read_text())
    assert f"best: trial {best['trial']}" in printed and "trial 2 was interrupted" in printed

    # as many trials as asked: nothing runs; another base configuration is refused
    assert main(["tune", "--config", str(config), "--out", str(out), "--trials", "3"]) == 0
    assert len(study_trials(out)[1]) == 4
    assert main(["tune", "--config", str(config), "--out", str(out), "--trials", "4", "--set",
                 "train.epochs=3"]) == 2
    assert "made with another configuration or search space" in capsys.readouterr().err


def test_a_pruned_trial_stops_early_and_is_never_the_best(tmp_path, monkeypatch):
    def prune_trial_1(self, epoch, record):  # the pruner's decision, forced for trial 1 after its first epoch
        if self.trial.number == 1:
            self.pruned_at = epoch

    monkeypatch.setattr(tuning.PruningCallback, "on_epoch_end", prune_trial_1)
    base = {"model": "sine", "data": {"max_len": 10}, "model_params": {"dim": 8, "num_concepts": 4},
            "train": {"epochs": 3, "max_steps_per_epoch": 1, "batch_size": 64, "threads": 1, "progress": False}}
    space = tuning.read_space({"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2}})
    lines = []
    result = tuning.tune(base, space, tmp_path / "study", 2, log=lines.append)
    states = [t.state.name for t in result.study.get_trials()]
    assert states == ["COMPLETE", "PRUNED"]
    epochs = [len((tmp_path / "study" / "trials" / f"trial-000{n}" / "log.jsonl").read_text().splitlines())
              for n in (0, 1)]
    assert epochs == [3, 1]
    assert lines[1].startswith("trial 1: pruned after epoch 1 (valid NDCG@10 ")
    assert result.best["trial"] == 0 and result.best["trials"] == {"complete": 1, "pruned": 1, "fail": 0}


def test_train_reads_a_config_file_with_a_tune_section(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text(CONFIG)
    config = load_config(file=path)
    assert (config.train.epochs, config.model_params.dim) == (2, 8)
