"""Row-sparse training of item tables: sparse lookups and a lazy (row-wise) Adam.

With sampled softmax a step reads a few thousand rows of an item table of millions (the batch's histories,
its targets and the shared negatives), yet a dense gradient and dense Adam write the whole table three times
per step (zero-fill and accumulate the gradient, update both moments and the weights). With
``train.optimizer = "lazy-adam"`` the trainer instead

1. switches the model's item tables (:meth:`SequentialRecommender.item_tables`) to sparse lookups
   (``nn.Embedding.sparse``) and scores the sampled softmax through ``F.embedding(..., sparse=True)``, so the
   table's gradient is a sparse COO tensor holding only the rows the step used (:func:`make_item_tables_sparse`);
2. optimises with :class:`LazyAdam`: Adam (fused, exactly ``torch.optim.Adam``) for every parameter whose
   gradient is dense, and for a sparse gradient the same formula applied to the touched rows only.

How the lazy update differs from dense Adam (for the rows of a sparse gradient; ``t`` counts the optimiser's
steps, one per call, global to the parameter, as in ``torch.optim.SparseAdam`` and TF's LazyAdam)::

    g_r   = grad_r + weight_decay * w_r                     (L2 as torch.optim.Adam's weight_decay, touched rows)
    m_r   = beta1 m_r + (1 - beta1) g_r
    v_r   = beta2 v_r + (1 - beta2) g_r^2
    w_r  -= lr / (1 - beta1^t) * m_r / (sqrt(v_r) / sqrt(1 - beta2^t) + eps)

for every row r whose gradient is not all zero (a row listed in a sparse gradient with zeros, such as the
padding row or the rows of a zero-weight filler example under torchrun, counts as untouched, so the update does
not depend on how the step's rows were split among processes). An untouched row keeps its weight *and* its
moments: dense Adam would decay both moments by beta1 / beta2, keep moving the row along its old momentum
(m / sqrt(v) decays slowly), and apply L2 to it. When every row is touched at every step the two are the same
update. Bias correction uses the global step t, not a per-row count: a row's first update is then exactly dense
Adam's (both moments start at zero in either; about 3.2 lr per coordinate late in training), and a row seen
again after a gap meets undecayed moments, where dense Adam's would have shrunk.

Memory: the weights and the two moments (3 copies of the table) instead of 4 plus a transient dense gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sinerec.errors import ConfigError
from sinerec.models.base import SequentialRecommender

__all__ = ["OPTIMIZERS", "LazyAdam", "clip_grad_norm_", "make_item_tables_sparse", "make_optimizer"]

#: ``train.optimizer`` values.
OPTIMIZERS = ("adam", "lazy-adam")


class LazyAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (fused) whose sparse gradients update only their rows (see the module docstring).

    Dense gradients go through Adam unchanged; a sparse COO gradient (from ``nn.Embedding(sparse=True)``) is
    coalesced (duplicate rows summed) and applied row-wise. The state has Adam's keys (``step``,
    ``exp_avg``, ``exp_avg_sq``), so checkpoints save and resume it as Adam's. Single-``step`` only: no
    closure, amsgrad, maximize or decoupled weight decay.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("LazyAdam.step: closures are not supported")
        hidden: list[tuple[Tensor, Tensor]] = []
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None and param.grad.is_sparse:
                    self._sparse_step(param, param.grad, group)
                    hidden.append((param, param.grad))
                    param.grad = None  # Adam refuses sparse gradients: hide them from its step
        try:
            super().step()
        finally:
            for param, grad in hidden:
                param.grad = grad

    def _sparse_step(self, param: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        state = self.state[param]
        if not state:  # Adam's layout (fused Adam keeps ``step`` as a float32 tensor on the device)
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        grad = grad.coalesce()
        rows, values = grad.indices()[0], grad.values()
        touched = values.ne(0).flatten(1).any(dim=1)  # rows listed with an all-zero gradient are not touched
        if not bool(touched.all()):
            rows, values = rows[touched], values[touched]
        if rows.numel() == 0:
            state["step"] += 1
            return
        if group["weight_decay"]:
            values = values.add(param.index_select(0, rows), alpha=group["weight_decay"])
        exp_avg = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values,
                                                                                     value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        state["step"] += 1
        step = float(state["step"])
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        denom = exp_avg_sq.sqrt_().div_(math.sqrt(bias2)).add_(group["eps"])
        param.index_add_(0, rows, exp_avg.div_(denom), alpha=-group["lr"] / bias1)


def make_item_tables_sparse(model: SequentialRecommender) -> list[nn.Embedding]:
    """Switch the model's item tables (``model.item_tables()``) to sparse gradients; returns them.

    Raises ConfigError when the model has no item table to make sparse (a plugin whose tables are named
    otherwise must override ``item_tables``)."""
    tables = model.item_tables()
    if not tables:
        raise ConfigError(f"train.optimizer: 'lazy-adam' needs a model with item tables; "
                          f"{type(model).__name__} has none (use 'adam')")
    for table in tables:
        table.sparse = True
    return tables


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``train.optimizer`` for ``model``: fused Adam (``"adam"``) or :class:`LazyAdam` (``"lazy-adam"``; the
    caller makes the item tables sparse, :func:`make_item_tables_sparse`). The two have the same state layout."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    if name == "lazy-adam":
        return LazyAdam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"train.optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")


@torch.no_grad()
def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm) that also takes sparse gradients; returns the total norm.

    Without sparse gradients it is torch's function. A sparse gradient is coalesced first (duplicate rows
    summed: the norm is the dense gradient's) and scaled by the same ``min(1, max_norm / (norm + 1e-6))``."""
    params = [p for p in params if p.grad is not None]
    if not any(p.grad is not None and p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    for param in params:
        assert param.grad is not None
        if param.grad.is_sparse:
            param.grad = param.grad.coalesce()
    grads = [p.grad.values() if p.grad.is_sparse else p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for param in params:
        assert param.grad is not None
        param.grad = param.grad * coef
    return total
