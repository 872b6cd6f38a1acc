"""Tests of the shared tensor operations of ``sinerec.models.ops``: values against the plain PyTorch formulas,
hand-written backwards gradchecked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sinerec.models.ops import init_item_table, masked_softmax, right_aligned_positions, squash, tanh, tanh_scores


def test_masked_softmax_gives_zeros_for_an_all_masked_row() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    weights = masked_softmax(logits, mask, dim=-1)
    expected_first = torch.softmax(torch.tensor([1.0, 3.0]), dim=0)
    assert torch.allclose(weights[0], torch.tensor([expected_first[0], 0.0, expected_first[1]]))
    assert torch.equal(weights[1], torch.zeros(3))
    weights.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()



@pytest.mark.parametrize(("with_bias", "heads", "num_out"), [(False, False, 4), (True, False, 1), (False, True, 3)])
def test_fused_tanh_scores_value_and_gradients(with_bias: bool, heads: bool, num_out: int) -> None:
    """tanh_scores(x, W_h, b_h, W_o) = tanh(x W_h^T + b_h) W_o^T (with heads: head k dots w_k with hidden
    units [k E, (k + 1) E) only). Its backward is written by hand: gradcheck it."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    hidden_w = torch.randn(9, 5, generator=g, dtype=torch.float64)  # H = 9 = 3 heads x 3
    hidden_b = torch.randn(9, generator=g, dtype=torch.float64) if with_bias else None
    out_w = torch.randn(num_out, 3 if heads else 9, generator=g, dtype=torch.float64)
    activation = torch.tanh(F.linear(x, hidden_w, hidden_b))  # (2, 3, 9)
    if heads:
        expected = (activation.view(2, 3, 3, 3) * out_w).sum(-1)  # (2, 3, K = 3)
    else:
        expected = activation @ out_w.T  # (2, 3, J)
    assert torch.allclose(tanh_scores(x, hidden_w, hidden_b, out_w, heads), expected, atol=1e-12)
    inputs = tuple(t.requires_grad_() for t in (x, hidden_w, hidden_b, out_w) if t is not None)
    if with_bias:
        assert torch.autograd.gradcheck(lambda a, b, c, d: tanh_scores(a, b, c, d, heads), inputs)
    else:
        assert torch.autograd.gradcheck(lambda a, b, c: tanh_scores(a, b, None, c, heads), inputs)


def test_tanh_scores_under_bfloat16_autocast() -> None:
    """Mixed precision: the hand-written backward runs in the forward's dtype and returns float32 grads, and
    scores and gradients agree with the float32 computation within bfloat16 precision (a few units of its
    eps, 2^-7, relative to each tensor's largest entry)."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5, requires_grad=True)
    hidden_w, out_w = torch.randn(8, 5, requires_grad=True), torch.randn(2, 4, requires_grad=True)
    upstream = torch.randn(4, 6, 2)  # a non-uniform upstream gradient: every output's backward counts
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = tanh_scores(x, hidden_w, None, out_w, heads=True)
    (scores.float() * upstream).sum().backward()
    assert scores.dtype == torch.bfloat16
    assert x.grad is not None and hidden_w.grad is not None and out_w.grad is not None
    assert x.grad.dtype == hidden_w.grad.dtype == out_w.grad.dtype == torch.float32

    leaves = [t.detach().clone().requires_grad_() for t in (x, hidden_w, out_w)]
    # float32 autograd through plain torch ops (not the hand-written backward under test)
    reference = (torch.tanh(leaves[0] @ leaves[1].T).view(4, 6, 2, 4) * leaves[2]).sum(-1)
    (reference * upstream).sum().backward()
    bound = 4 * torch.finfo(torch.bfloat16).eps
    for got, want in ((scores.float(), reference), (x.grad, leaves[0].grad), (hidden_w.grad, leaves[1].grad),
                      (out_w.grad, leaves[2].grad)):
        assert want is not None
        assert (got - want).abs().max() <= bound * want.abs().max(), (got - want).abs().max()


def test_sigmoid_based_tanh_matches_torch_tanh() -> None:
    x = torch.linspace(-12, 12, 1001, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(tanh(x), torch.tanh(x), atol=1e-14)
    assert torch.autograd.gradcheck(tanh, (x[::50].detach().clone().requires_grad_(),))
    assert torch.allclose(tanh(x.float()), torch.tanh(x.float()), atol=3e-7)


def test_squash_scales_the_norm_to_its_square_over_one_plus_square() -> None:
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)  # norms 5 and 0
    expected_first = torch.tensor([3.0, 4.0], dtype=torch.float64) / 5 * (25 / 26)  # |z|^2/(1+|z|^2) z/|z|
    out = squash(z, eps=1e-30)  # eps only keeps the zero vector's division finite
    assert torch.allclose(out[0], expected_first, atol=1e-12)
    assert torch.equal(out[1], torch.zeros(2, dtype=torch.float64))


def test_init_item_table_zeroes_padding_and_draws_the_rest():
    table = torch.nn.Embedding(3001, 7)
    torch.manual_seed(0)
    init_item_table(table, std=0.5)
    assert torch.equal(table.weight[0], torch.zeros(7))
    assert abs(table.weight[1:].std().item() - 0.5) < 0.01  # 21,000 draws: std of the estimate about 0.0025


def test_right_aligned_positions_put_the_most_recent_column_last():
    assert right_aligned_positions(3, 8, torch.device("cpu")).tolist() == [5, 6, 7]
    assert right_aligned_positions(8, 8, torch.device("cpu")).tolist() == list(range(8))
