"""The trainer with SINE: determinism, resume, checkpoints, learning on planted concepts."""

import json
from pathlib import Path

import pytest
import torch

from sinerec.cli import main
from sinerec.config import load_config
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import make_split
from sinerec.data.synthetic import planted_concepts
from sinerec.storage import load_torch
from sinerec.train import Trainer

TINY = ["data.max_len=8", "train.batch_size=64", "train.progress=false"]
TINY_SINE = ["model_params.dim=16", "model_params.num_concepts=10", "model_params.num_interests=2"]


def fit(overrides, data=None, run_dir=None, resume=False):
    model_params = TINY_SINE if "model=mostpop" not in overrides else []
    config = load_config(overrides=TINY + model_params + overrides)
    data = data or preprocess(planted_concepts(n_users=120, n_items=60, n_concepts=6, length=15, seed=1))
    split = make_split(data, config.protocol)
    trainer = Trainer(config, data, split, run_dir=run_dir, log=lambda *a: None)
    return trainer, trainer.fit(resume=resume)


def test_seeded_training_is_deterministic():
    _, a = fit(["train.epochs=2", "train.seed=3"])
    _, b = fit(["train.epochs=2", "train.seed=3"])
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert a.test.means == b.test.means
    _, c = fit(["train.epochs=2", "train.seed=4"])
    assert not torch.equal(a.model.item_embeddings(), c.model.item_embeddings())


def test_resume_continues_exactly_and_checkpoints_reload(tmp_path):
    # straight: 3 epochs; interrupted: 1 epoch, then resumed to 3 from the checkpoint
    overrides = ["train.seed=5", "train.patience=10"]
    _, straight = fit(overrides + ["train.epochs=3"], run_dir=tmp_path / "a")
    (tmp_path / "b").mkdir()
    fit(overrides + ["train.epochs=1"], run_dir=tmp_path / "b")
    _, resumed = fit(overrides + ["train.epochs=3"], run_dir=tmp_path / "b", resume=True)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert straight.test.means == resumed.test.means
    # model.pt holds the best weights and loads with weights_only=True
    state = load_torch(tmp_path / "a" / "model.pt")
    trainer, _ = fit(overrides + ["train.epochs=1"])
    trainer.model.load_state_dict(state)
    history = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5]])
    trainer.model.eval()
    straight.model.eval()
    assert torch.equal(trainer.model.user_vectors(history), straight.model.user_vectors(history))
    assert len((tmp_path / "b" / "log.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_sine_beats_mostpop_on_planted_concepts(variant):
    data = preprocess(planted_concepts(n_users=400, n_items=200, n_concepts=20, concepts_per_user=2,
                                       length=30, seed=0))
    # items repeat within a user's clusters, so the history is not excluded from the ranking
    protocol = ["protocol.exclude_history=false"]
    _, pop = fit(["model=mostpop"] + protocol, data=data)
    _, sine = fit([f"model_params.variant={variant}", "model_params.dim=32", "model_params.num_concepts=20",
                   "train.epochs=6", "train.lr=0.005", "data.max_len=20"] + protocol, data=data)
    pop_hr, sine_hr = pop.test.means["HR@10"], sine.test.means["HR@10"]
    # Users draw from 2 of 20 planted clusters of 10 Zipf-weighted items. Knowing the clusters, the best
    # top 10 is each cluster's top 5: HR@10 = 2 * H(5) / (2 * H(10)) = 0.78; popularity alone gets ~0.18.
    assert sine_hr > 0.5 and sine_hr > pop_hr + 0.3, (sine_hr, pop_hr)


def test_cli_train_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "mostpop", "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["model"] == "mostpop"
    assert doc["dataset"]["name"] == "ml-latest-small" and doc["dataset"]["n_users"] == 610
    # MostPop has no randomness: its numbers on the built-in data and leave-one-out split are known exactly
    # (benchmarks/ml-latest-small/mostpop-metrics.json, quoted in the README)
    assert doc["dataset"]["fingerprint"] == "c70c4b936a3ecbc7"
    assert doc["protocol"]["name"] == "loo" and doc["protocol"]["exclude_history"] is True
    assert doc["protocol"]["fingerprint"] == "0f5d89bf6f79bc79"
    assert doc["protocol"]["n_train_examples"] == 99006
    hits = {k: round(doc["test"][f"HR@{k}"] * 610, 9) for k in (10, 20, 50, 100)}
    assert hits == {10: 25, 20: 43, 50: 66, 100: 114}
    assert doc["test"]["NDCG@10"] == pytest.approx(0.018809666286387743, rel=1e-12)
    assert doc["test"]["NDCG@50"] == pytest.approx(0.033676578751862585, rel=1e-12)
    assert doc["test"]["MRR@100"] == pytest.approx(0.016446401610158406, rel=1e-12)
    committed = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "ml-latest-small"
                            / "mostpop-metrics.json").read_text())
    assert doc["test"] == pytest.approx(committed["test"], rel=1e-12)
    assert doc["valid"] == pytest.approx(committed["valid"], rel=1e-12)
    for name in ("config.json", "items.csv", "users.csv", "sequences.npz", "data.json"):
        assert (out / name).exists(), name
    printed = capsys.readouterr().out
    assert "HR" in printed and str(out / "metrics.json") in printed
    # the run directory is never overwritten
    assert main(["train", "--model", "mostpop", "--out", str(out), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.parametrize("name, counts", [
    ("ml-1m", (6040, 3706, 1000209)),
    ("amazon-beauty", (22363, 12101, 198502)),
    ("ml-latest-small", (610, 9724, 100836)),
])
@pytest.mark.slow
def test_cli_describe_prints_published_counts(name, counts, capsys):
    from conftest import shared_dataset

    rc = main(["data", "describe", "--dataset", name, "--data-dir", str(shared_dataset(name)), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["n_users"], out["n_items"], out["n_interactions"]) == counts


def test_cli_describe_reports_bad_rows_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "log.csv"
    bad.write_text("user_id,item_id,timestamp\n1,10,100\n1,20\n")
    rc = main(["data", "describe", "--path", str(bad), "--format", "table"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "log.csv" in err and "line 3" in err and "1,20" in err


def scripted_validation(monkeypatch, values):
    """Trainer.evaluate("valid") during training returns NDCG@10 = ``values`` in turn (every other metric of
    the real evaluation kept); after the script, the real evaluation. Returns the list of epochs' calls."""
    real = Trainer.evaluate
    script = list(values)
    calls = []

    def evaluate(self, which, progress=False):
        result = real(self, which, progress)
        if which == "valid" and script:
            calls.append(script[0])
            result.means = {**result.means, "NDCG@10": script.pop(0)}
        return result

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    return calls


def test_early_stopping_fires_and_restores_the_best_epoch(monkeypatch, tmp_path):
    """Validation NDCG@10 0.1, 0.3, 0.2, 0.25 with patience 2: training stops after epoch 4 of 10 and the
    model returned (and model.pt) holds epoch 2's weights, those of a run that stopped at epoch 2."""
    overrides = ["train.seed=5", "train.patience=2", "train.monitor=NDCG@10"]
    calls = scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.25])
    (tmp_path / "run").mkdir()
    _, stopped = fit(overrides + ["train.epochs=10"], run_dir=tmp_path / "run")
    assert calls == [0.1, 0.3, 0.2, 0.25]
    assert len(stopped.history) == 4 and stopped.best_epoch == 2
    assert [h["valid"]["NDCG@10"] for h in stopped.history] == [0.1, 0.3, 0.2, 0.25]
    monkeypatch.undo()
    _, two = fit(overrides + ["train.epochs=2"])
    for k, v in two.model.state_dict().items():
        assert torch.equal(v, stopped.model.state_dict()[k]), k
        assert torch.equal(v, load_torch(tmp_path / "run" / "model.pt")[k]), k
    assert stopped.test.means == two.test.means


@pytest.mark.slow
def test_eval_every_validates_every_nth_epoch_and_the_last(monkeypatch):
    """eval_every 2 over 5 epochs: validation after epochs 2, 4 and 5 only; patience counts validations (the
    script 0.3, 0.2, 0.1 with patience 2 stops at the third validation, epoch 5, best epoch 2)."""
    calls = scripted_validation(monkeypatch, [0.3, 0.2, 0.1])
    _, result = fit(["train.seed=5", "train.epochs=5", "train.eval_every=2", "train.patience=2"])
    assert calls == [0.3, 0.2, 0.1]
    assert [("valid" in h) for h in result.history] == [False, True, False, True, True]
    assert result.best_epoch == 2
    calls = scripted_validation(monkeypatch, [0.1, 0.2, 0.3])
    _, result = fit(["train.seed=5", "train.epochs=4", "train.eval_every=3", "train.patience=5"])
    assert [("valid" in h) for h in result.history] == [False, False, True, True] and result.best_epoch == 4
