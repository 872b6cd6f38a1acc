"""Row-sparse item tables and the lazy Adam of ``sinerec.optim``: the documented formula, computed by hand;
only the touched rows change; every gradient model's tables become sparse; settings; resume."""

from __future__ import annotations

import math

import pytest
import torch
from test_baselines import GRADIENT_MODELS, build, histories
from test_train import fit

from sinerec import losses, optim
from sinerec.config import load_config
from sinerec.errors import ConfigError
from sinerec.train import TrainingLoss

LR, B1, B2, EPS = 0.1, 0.9, 0.999, 1e-8


def sparse_grad(rows: list[int], values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape, check_invariants=True)


def test_lazy_adam_updates_touched_rows_by_the_documented_formula():
    weight = torch.arange(15, dtype=torch.float32).reshape(5, 3) / 10
    param = torch.nn.Parameter(weight.clone())
    opt = optim.LazyAdam([param], lr=LR, weight_decay=0.01)
    # step 1: rows 1 and 3 (row 3 listed twice: its gradients add up), row 4 listed with a zero gradient
    g1 = torch.tensor([[1.0, -2.0, 0.5], [0.25, 0.0, -1.0], [0.75, 1.0, 1.0], [0.0, 0.0, 0.0]])
    param.grad = sparse_grad([1, 3, 3, 4], g1, (5, 3))
    opt.step()
    row1_moments = [opt.state[param][key][1].clone() for key in ("exp_avg", "exp_avg_sq")]
    # step 2: rows 3 and 0
    g2 = torch.tensor([[-0.5, 0.5, 2.0], [3.0, -1.0, 0.0]])
    param.grad = sparse_grad([3, 0], g2, (5, 3))
    opt.step()

    # by hand: the module docstring's formula, step t global (1 then 2), untouched rows keep w, m and v
    w, m, v = weight.clone().double(), torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5, 3, dtype=torch.float64)
    for t, grads in ((1, {1: g1[0], 3: g1[1] + g1[2]}), (2, {3: g2[0], 0: g2[1]})):
        for r, g in grads.items():
            g = g.double() + 0.01 * w[r]
            m[r] = B1 * m[r] + (1 - B1) * g
            v[r] = B2 * v[r] + (1 - B2) * g * g
            w[r] = w[r] - LR / (1 - B1**t) * m[r] / (v[r].sqrt() / math.sqrt(1 - B2**t) + EPS)
    assert torch.allclose(param.detach().double(), w, rtol=0, atol=1e-6)
    assert torch.equal(param.detach()[[2, 4]], weight[[2, 4]])  # never touched (row 4: zeros only)
    state = opt.state[param]
    assert float(state["step"]) == 2
    assert torch.allclose(state["exp_avg"].double(), m, atol=1e-7)
    assert torch.allclose(state["exp_avg_sq"].double(), v, atol=1e-9)
    assert torch.equal(state["exp_avg"][1], row1_moments[0])  # row 1 untouched at t = 2: moments not decayed
    assert torch.equal(state["exp_avg_sq"][1], row1_moments[1])


def test_lazy_adam_is_adam_when_every_row_is_touched_and_for_dense_parameters():
    torch.manual_seed(0)
    init = torch.randn(6, 4)
    lazy_table, dense_table = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    lazy_bias, dense_bias = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    lazy = optim.LazyAdam([lazy_table, lazy_bias], lr=0.05, weight_decay=0.1)
    dense = torch.optim.Adam([dense_table, dense_bias], lr=0.05, weight_decay=0.1, fused=True)
    for _ in range(5):
        g, gb = torch.randn(6, 4), torch.randn(4)
        lazy_table.grad, lazy_bias.grad = sparse_grad(list(range(6)), g, (6, 4)), gb.clone()
        dense_table.grad, dense_bias.grad = g.clone(), gb.clone()
        lazy.step()
        dense.step()
    assert torch.allclose(lazy_table, dense_table, atol=1e-6)
    assert torch.equal(lazy_bias, dense_bias)  # dense gradients: torch's fused Adam itself
    assert lazy.state_dict()["state"].keys() == dense.state_dict()["state"].keys()


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_sampled_step_touches_only_the_rows_it_used(name: str) -> None:
    # every gradient model: with lazy-adam the item tables get sparse gradients, and one step changes exactly
    # the rows of the histories, the targets and the negatives (padding row 0 never)
    model = build(name)
    tables = optim.make_item_tables_sparse(model)
    before = [t.weight.detach().clone() for t in tables]
    opt = optim.make_optimizer(model, "lazy-adam", lr=0.01, weight_decay=0.0)
    history, target, negatives = histories(), torch.tensor([3, 4, 6]), torch.tensor([10, 11, 4])
    loss, _ = TrainingLoss(model, sparse=True)(history, target, negatives, torch.zeros(3), torch.zeros(3))
    loss.backward()
    assert all(t.weight.grad is not None and t.weight.grad.is_sparse for t in tables), name
    opt.step()
    used = set(history.flatten().tolist()) | {3, 4, 6, 10, 11}
    for table, old in zip(tables, before, strict=True):
        changed = set(torch.nonzero((table.weight.detach() != old).any(dim=1)).flatten().tolist())
        assert changed and changed <= used - {0}, (name, sorted(changed - used))


def test_sparse_sampled_loss_equals_the_dense_one():
    torch.manual_seed(1)
    table, user = torch.randn(9, 5, requires_grad=True), torch.randn(2, 5)
    args = (torch.tensor([1, 8]), torch.tensor([2, 8, 3]), torch.zeros(2), torch.zeros(3))
    dense = losses.sampled_softmax_loss(user, table, *args)
    (dense_grad,) = torch.autograd.grad(dense, table)
    sparse = losses.sampled_softmax_loss(user, table, *args, sparse=True)
    (sparse_grad_,) = torch.autograd.grad(sparse, table)
    assert torch.equal(dense, sparse) and sparse_grad_.is_sparse
    assert torch.allclose(sparse_grad_.to_dense(), dense_grad, atol=1e-7)


def test_clip_grad_norm_with_sparse_gradients_is_the_dense_clip():
    torch.manual_seed(2)
    g, gb = torch.randn(5, 3), torch.randn(3)
    sparse_p, sparse_b = torch.nn.Parameter(torch.zeros(5, 3)), torch.nn.Parameter(torch.zeros(3))
    dense_p, dense_b = torch.nn.Parameter(torch.zeros(5, 3)), torch.nn.Parameter(torch.zeros(3))
    sparse_p.grad = sparse_grad([0, 1, 1, 2, 4], torch.cat([g[:1], g[1:2] / 2, g[1:2] / 2, g[2:3], g[4:5]]), (5, 3))
    g[3] = 0
    dense_p.grad, sparse_b.grad, dense_b.grad = g.clone(), gb.clone(), gb.clone()
    total_sparse = optim.clip_grad_norm_([sparse_p, sparse_b], 0.5)
    total_dense = torch.nn.utils.clip_grad_norm_([dense_p, dense_b], 0.5)
    assert torch.allclose(total_sparse, total_dense)
    assert torch.allclose(sparse_p.grad.to_dense(), dense_p.grad) and torch.allclose(sparse_b.grad, dense_b.grad)


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.optimizer=sgd"], "train.optimizer: expected 'adam' or 'lazy-adam', got 'sgd'"),
    (["train.optimizer=lazy-adam"], "needs train.loss = 'sampled' (train.loss = 'full'"),
    (["train.optimizer=lazy-adam", "train.loss=sampled", "train.compile=true"], "train.compile"),
])
def test_optimizer_setting_is_validated(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(overrides=overrides)


def test_default_optimizer_is_dense_adam():
    assert load_config().train.optimizer == "adam"


LAZY = ["train.loss=sampled", "train.num_negatives=20", "train.optimizer=lazy-adam", "train.seed=5",
        "train.patience=10"]


def test_lazy_adam_resume_continues_exactly(tmp_path):
    _, straight = fit(LAZY + ["train.epochs=3", "train.grad_clip=1.0"], run_dir=tmp_path / "a")
    (tmp_path / "b").mkdir()
    fit(LAZY + ["train.epochs=1", "train.grad_clip=1.0"], run_dir=tmp_path / "b")
    _, resumed = fit(LAZY + ["train.epochs=3", "train.grad_clip=1.0"], run_dir=tmp_path / "b", resume=True)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert straight.test.means == resumed.test.means
    # and the checkpoint's optimizer state is Adam's layout: step, exp_avg, exp_avg_sq per parameter
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    assert all(set(s) == {"step", "exp_avg", "exp_avg_sq"} for s in state.values())


def test_cli_refuses_lazy_adam_with_full_softmax_in_one_line(tmp_path, capsys):
    from sinerec.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), "--set", "train.optimizer=lazy-adam"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.optimizer: 'lazy-adam'" in err and "train.loss" in err, err
    assert not (tmp_path / "run").exists()


def test_a_model_without_item_tables_is_refused_by_name():
    from sinerec.models.mostpop import MostPop, MostPopConfig

    with pytest.raises(ConfigError, match="train.optimizer: 'lazy-adam' needs a model with item tables; MostPop"):
        optim.make_item_tables_sparse(MostPop(5, 3, MostPopConfig()))
