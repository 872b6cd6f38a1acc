"""ComiRec: Cen, Zhang, Zou, Zhou, Yang & Tang, "Controllable Multi-Interest Framework for Recommendation",
KDD 2020.

Two multi-interest extractors with the same training and retrieval, one class each:

- ``ComiRecSA`` (self-attentive): K attention heads over the history, A = softmax_t(W2^T tanh(W1 H^T)),
  interests V_u = A H (Sec. 3.3).
- ``ComiRecDR`` (dynamic routing): capsule routing with one bilinear map W_ij per (behaviour position i,
  interest j), routing logits starting at 0, squash, 3 iterations (Sec. 3.2); gradients reach the
  predictions only through the last iteration, the earlier ones only setting the routing weights, as in the
  authors' code (``stop_routing_gradient``).

Training (Eq. 4): the interest with the largest inner product with the target item's embedding is the user
vector (a hard argmax; gradient reaches that interest only). Retrieval (``multi_vector_retrieval``): every
interest retrieves top-N, merged by score, items deduplicated = an item scores its max over the K interests.
The item table is shared by the history embeddings and the softmax, as in the authors' code.

Faithful to the paper and the authors' code (THUDM/ComiRec): D = 64, K = 4, attention hidden size
d_a = 4 D, learned positional embeddings added to the attention scorer's input in ComiRec-SA (the code's
``add_pos=True``; the values summed are the raw item embeddings), per-position-and-interest bilinear maps
and zero initial routing logits in ComiRec-DR (the code's ``bilinear_type=2``), softmax of the routing logits
over interests with padding positions given weight 0.

Simplified, and why:
- No aggregation module (Sec. 3.4's controllable diversity, lambda): that is a re-ranking of retrieved
  candidates, outside the model; lambda = 0 is the plain merge above.
- Trained by the trainer's softmax cross-entropy (full or sampled) instead of TF's sampled softmax loss.
- The attention scorer has no biases (the paper's formula; the code's dense layers have biases, which only
  shift the tanh input), and the bilinear maps start at N(0, 1/D) (the code: N(0, 1)) so that predictions
  keep the scale of the embeddings.
- Positions count from the right: column t of a T-wide history is position max_len - T + t, so the most
  recent item always has the last positional embedding / bilinear maps and left padding is inert. The
  authors' code right-pads, so the oldest item of a short history gets position 0 there.
- Without a target, ``user`` is the mean of the interests; retrieval uses the interests, not ``user``.

One config, :class:`ComiRecConfig`, for both; each class ignores the other's fields.

Shapes: B batch, T history length, D dim, K interests, M items (ids 1..M, id 0 padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sinerec.errors import ConfigError
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.models.ops import init_item_table, masked_softmax, right_aligned_positions, squash

__all__ = ["ComiRecConfig", "ComiRecDR", "ComiRecSA"]


@dataclass
class ComiRecConfig:
    """Settings of :class:`ComiRecSA` and :class:`ComiRecDR`; defaults are the paper's (D 64, K 4)."""

    dim: int = 64
    """D, the size of item embeddings and interests."""
    num_interests: int = 4
    """K, interests per user (attention heads for SA, interest capsules for DR)."""
    attention_factor: int = 4
    """SA only: the attention scorer's hidden size d_a is attention_factor * D (the code: 4 * D)."""
    positional_embeddings: bool = True
    """SA only: add learned positional embeddings to the attention scorer's input (the code's add_pos)."""
    routing_iterations: int = 3
    """DR only: dynamic routing iterations (the paper and code: 3)."""
    stop_routing_gradient: bool = True
    """DR only: the iterations before the last see the predictions e_hat with gradients stopped, so that they
    only set the routing weights (the authors' code); false lets gradients flow through every iteration (this
    library's reading before 2026-12-01: on Amazon Beauty under ComiRec's protocol, converged, 3 seeds, 8 %
    lower test Recall@50 and level on validation NDCG@10; benchmarks/baselines.md)."""
    learned_scale: bool = False
    """DR only, not the paper's: multiply the squashed capsules (norm < 1) by one learned scalar exp(a), a = 0 at
    the start, so that the softmax can sharpen without growing the item vectors. Retrieval ranks the same for
    any common scale; only training differs. A diagnosis of the bounded capsules, off by default."""

    def __post_init__(self) -> None:
        for name in ("dim", "num_interests", "attention_factor", "routing_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"comirec.{name}: must be an integer >= 1, got {value!r}")
        if not isinstance(self.learned_scale, bool):
            raise ConfigError(f"comirec.learned_scale: must be true or false, got {self.learned_scale!r}")
        if not isinstance(self.stop_routing_gradient, bool):
            raise ConfigError(
                f"comirec.stop_routing_gradient: must be true or false, got {self.stop_routing_gradient!r}"
            )
        if not isinstance(self.positional_embeddings, bool):
            raise ConfigError(
                f"comirec.positional_embeddings: must be true or false, got {self.positional_embeddings!r}"
            )


class _ComiRec(SequentialRecommender):
    """What both extractors share: the item table, the training readout (Eq. 4), retrieval by max over K."""

    multi_vector_retrieval = True

    def __init__(self, num_items: int, max_len: int, config: ComiRecConfig) -> None:
        super().__init__(num_items)
        self.config = config
        self.max_len = max_len
        self.item_embedding = nn.Embedding(num_items + 1, config.dim, padding_idx=0)  # shared input / output
        init_item_table(self.item_embedding, std=config.dim**-0.5)

    def extract_interests(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, T) -> interests (B, K, D)."""
        raise NotImplementedError

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        """history (B, T) left-padded ids, T <= max_len, target (B,) in training -> user (B, D), interests."""
        if history.shape[1] > self.max_len:
            raise ValueError(
                f"comirec: history has {history.shape[1]} columns, more than max_len={self.max_len}"
            )
        interests = self.extract_interests(history)  # (B, K, D)
        if target is None:
            user = interests.mean(1)  # (B, D), not used by retrieval
        else:
            # Eq. 4: v_u = V_u[:, argmax(V_u^T e_target)]
            affinity = (interests @ self.item_embedding(target).unsqueeze(-1)).squeeze(-1)  # (B, K)
            chosen = affinity.argmax(1)  # (B,)
            user = interests[torch.arange(interests.shape[0], device=interests.device), chosen]  # (B, D)
        return ModelOutput(user=user, interests=interests)

    def item_embeddings(self) -> torch.Tensor:
        """(M + 1, D), the same table as the history embeddings."""
        return self.item_embedding.weight


class ComiRecSA(_ComiRec):
    """ComiRec-SA: K self-attention heads over the history, one interest each."""

    def __init__(self, num_items: int, max_len: int, config: ComiRecConfig) -> None:
        super().__init__(num_items, max_len, config)
        dim, hidden = config.dim, config.attention_factor * config.dim
        self.position_embedding = nn.Embedding(max_len, dim) if config.positional_embeddings else None
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, std=dim**-0.5)
        self.attention_hidden = nn.Linear(dim, hidden, bias=False)  # W1 (d_a x d)
        self.attention_heads = nn.Linear(hidden, config.num_interests, bias=False)  # W2 (d_a x K)

    def extract_interests(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, T) -> interests V_u = A H (B, K, D), Eq. 1-2."""
        length = history.shape[1]
        real = history != 0  # (B, T)
        items = self.item_embedding(history)  # H, (B, T, D)
        scorer_input = items
        if self.position_embedding is not None:
            positions = right_aligned_positions(length, self.max_len, history.device)  # (T,)
            scorer_input = items + self.position_embedding(positions)  # (B, T, D)
        logits = self.attention_heads(torch.tanh(self.attention_hidden(scorer_input)))  # (B, T, K)
        attention = masked_softmax(logits, real.unsqueeze(-1), dim=1)  # A^T, (B, T, K); 0 at padding
        return attention.transpose(1, 2) @ items  # (B, K, T) @ (B, T, D) -> (B, K, D)


class ComiRecDR(_ComiRec):
    """ComiRec-DR: dynamic routing with a bilinear map per (position, interest)."""

    def __init__(self, num_items: int, max_len: int, config: ComiRecConfig) -> None:
        super().__init__(num_items, max_len, config)
        dim = config.dim
        # W_ij: row p is the map of the p-th position (counted so that p = max_len - 1 is the most recent),
        # for each interest j, (max_len, K, D_out, D_in).
        self.bilinear = nn.Parameter(torch.randn(max_len, config.num_interests, dim, dim) * dim**-0.5)
        if config.learned_scale:
            self.log_scale = nn.Parameter(torch.zeros(()))  # a, the capsules' scale exp(a)

    def extract_interests(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, T) -> interest capsules (B, K, D), Algorithm 1 of the paper."""
        length = history.shape[1]
        real = (history != 0).unsqueeze(1).to(self.bilinear.dtype)  # (B, 1, T)
        items = self.item_embedding(history)  # e_i, (B, T, D)
        maps = self.bilinear[self.max_len - length :]  # (T, K, D, D)
        predictions = torch.einsum("tkoi,bti->bkto", maps, items)  # e_hat_{j|i} = W_ij e_i, (B, K, T, D)

        # the code routes a copy of e_hat with gradients stopped in every iteration but the last
        routed = predictions.detach() if self.config.stop_routing_gradient else predictions
        logits = predictions.new_zeros(predictions.shape[:3])  # b_ij = 0, (B, K, T)
        iterations = self.config.routing_iterations
        for iteration in range(iterations):
            last = iteration + 1 == iterations
            source = predictions if last else routed  # (B, K, T, D)
            weights = torch.softmax(logits, dim=1) * real  # c_ij, softmax over interests; padding gets 0
            capsules = squash(torch.einsum("bkt,bktd->bkd", weights, source))  # (B, K, D)
            if not last:
                logits = logits + torch.einsum("bktd,bkd->bkt", source, capsules)  # b_ij += e_hat . v_j
        return capsules * self.log_scale.exp() if self.config.learned_scale else capsules
