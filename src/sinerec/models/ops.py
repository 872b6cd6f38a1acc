"""Tensor operations shared by the models: the item table's initialisation, right-aligned positions, masked
softmax, capsule squash and fused CPU kernels.

Pure functions of tensors, no parameters: the models hold the weights and call these. The kernels in the
second half compute exactly what their docstrings say (tests pin them against the plain PyTorch formulas);
they exist only because the plain formulas are slow on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["init_item_table", "masked_softmax", "right_aligned_positions", "squash", "tanh", "tanh_scores"]


def init_item_table(table: nn.Embedding, std: float) -> None:
    """Fill an item table (M + 1, D) from N(0, std^2), then zero row 0: padding (id 0) is the zero vector."""
    nn.init.normal_(table.weight, std=std)
    with torch.no_grad():
        table.weight[0].zero_()


def right_aligned_positions(length: int, max_len: int, device: torch.device) -> Tensor:
    """(T,) the positions max_len - T .. max_len - 1 of a T-wide left-padded history's columns: the most recent
    item always has position max_len - 1, so extra left padding moves no item's position."""
    return torch.arange(max_len - length, max_len, device=device)


def masked_softmax(logits: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax of ``logits`` along ``dim``; where ``mask`` (bool, broadcastable) is False the weight is
    exactly 0, and a slice with no True entry (a fully padded history) gets all zeros, not NaN."""
    logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return torch.softmax(logits, dim=dim) * mask


def squash(z: Tensor, eps: float = 1e-9) -> Tensor:
    """Capsule squash along the last axis: |z|^2 / (1 + |z|^2) * z / |z|; the zero vector stays zero."""
    norm2 = z.pow(2).sum(-1, keepdim=True)
    return z * (norm2 / (1 + norm2) / torch.sqrt(norm2 + eps))


# Why the two autograd functions below: PyTorch's CPU tanh kernel is slow (11.5 ms on 10M floats with 2
# cores, against 3.5 ms for 2 sigmoid(2x) - 1, which equals tanh(x) to 2e-7 in float32). The tanh
# attention scorers on (B, T, K D) or (B, T, H) are the model's largest element-wise work; fusing a scorer
# also allocates its big activation once in forward and once in backward (a fresh allocation of tens of
# MB costs page faults under glibc malloc), and avoids BLAS calls with an inner dimension of 1 or K.


def _tanh_(x: Tensor) -> Tensor:
    """tanh(x) in place, as 2 sigmoid(2x) - 1."""
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = _tanh_(x.clone())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)  # grad * (1 - y^2)


def tanh(x: Tensor) -> Tensor:
    """``torch.tanh(x)``, computed faster on CPU (see the note above)."""
    return _Tanh.apply(x)


def _block_diagonal(rows: Tensor) -> Tensor:
    """(K, E) -> (K, K E): row k holds w_k in columns [k E, (k + 1) E) and zeros elsewhere, so that
    ``F.linear(h, it)`` on h (..., K E) takes the K per-head dot products h_k . w_k in one matmul."""
    num, width = rows.shape
    eye = torch.eye(num, dtype=rows.dtype, device=rows.device)  # (K, K)
    return (eye.unsqueeze(-1) * rows.unsqueeze(0)).reshape(num, num * width)  # [j, k E + e] = [j = k] w_k[e]


class _TanhScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, hidden_w: Tensor, hidden_b: Tensor | None, out_w: Tensor, heads: bool) -> Tensor:
        activation = _tanh_(F.linear(x, hidden_w, hidden_b))  # (..., H), the one big allocation
        ctx.save_for_backward(x, hidden_w, out_w, activation)
        ctx.has_bias, ctx.heads = hidden_b is not None, heads
        out_w = out_w.to(activation.dtype)  # under autocast the activation is bf16 / fp16
        return F.linear(activation, _block_diagonal(out_w) if heads else out_w)  # (..., J)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, hidden_w, out_w, activation = ctx.saved_tensors
        # Work in the forward's compute dtype (autocast); autograd casts each gradient back to its input's.
        # grad is often a transposed view: made contiguous (it is small) so that grad_hidden is contiguous.
        dtype = activation.dtype
        grad, x, hidden_w, out_w = grad.to(dtype).contiguous(), x.to(dtype), hidden_w.to(dtype), out_w.to(dtype)
        width = activation.shape[-1]
        # grad @ out_w, but BLAS is slow at an inner dimension of 1 or K (up to 7x here): broadcast instead.
        if ctx.heads:  # d score_k / d hidden[k E + e] = w_k[e]
            per_head = grad.unsqueeze(-1).expand(*grad.shape, out_w.shape[1])  # (..., K, E); 3x faster than
            grad_hidden = torch.mul(per_head, out_w).view(*grad.shape[:-1], width)  # implicit broadcast
        elif out_w.shape[0] == 1:
            grad_hidden = grad * out_w[0]  # (..., 1) * (H,) -> (..., H)
        else:
            grad_hidden = grad @ out_w  # (..., H)
        torch.ops.aten.tanh_backward.grad_input(grad_hidden, activation, grad_input=grad_hidden)  # in place
        flat_grad_hidden = grad_hidden.reshape(-1, width)  # (N, H)
        needs = ctx.needs_input_grad
        grad_x = grad_hidden @ hidden_w if needs[0] else None
        grad_hidden_w = flat_grad_hidden.T @ x.reshape(-1, x.shape[-1]) if needs[1] else None
        grad_hidden_b = flat_grad_hidden.sum(0) if ctx.has_bias and needs[2] else None
        grad_out_w = None
        if needs[3]:
            grad_out_w = grad.reshape(-1, grad.shape[-1]).T @ activation.reshape(-1, width)  # (J, H)
            if ctx.heads:  # keep the diagonal blocks: (K, K, E) -> (K, E)
                num = out_w.shape[0]
                grad_out_w = grad_out_w.view(num, num, -1).diagonal(dim1=0, dim2=1).T
        return grad_x, grad_hidden_w, grad_hidden_b, grad_out_w, None


def tanh_scores(x: Tensor, hidden_w: Tensor, hidden_b: Tensor | None, out_w: Tensor, heads: bool = False) -> Tensor:
    """The additive-attention scorer ``tanh(x W_h^T + b_h) W_o^T`` as one fused, CPU-friendly op.

    Args:
        x: (..., D) inputs.
        hidden_w: (H, D) and hidden_b: (H,) or None, the hidden layer.
        out_w: (J, H) the output queries; or, with ``heads=True``, (K, H / K): K heads, head k scoring
            the hidden units [k H / K, (k + 1) H / K) only (the paper's K attention heads, Eq. 4).

    Returns:
        (..., J) scores (J = K with heads).
    """
    return _TanhScores.apply(x, hidden_w, hidden_b, out_w, heads)
