"""SASRec: Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

Causal self-attention over the history's item embeddings plus learned positional embeddings; the output at
the most recent position is the user vector, scored against the same (shared) item embedding table.

Faithful:
- Embedding layer (Sec. III-A): E_hat = M_s + P, learned positions, item embeddings scaled by sqrt(D) (as the
  authors' code does), dropout on E_hat, the shared item table M for input and output (Sec. III-E).
- b = 2 blocks, each self-attention then a point-wise two-layer ReLU feed-forward network of width D, with the
  paper's layout g(x) = x + Dropout(g(LayerNorm(x))) around both (Sec. III-D), causal masking (Sec. III-B).
- Outputs at padding positions are zeroed after every block, and a final LayerNorm, as in the authors' code.
- Defaults: D = 50, one head, dropout 0.2 (the paper's ML-1M setting; it uses 0.5 on sparser datasets).

Simplified, and why:
- Queries, keys and values all read LayerNorm(x), as the paper's formula g(LayerNorm(x)) says; the authors'
  code normalises the queries only.
- One output per history (its most recent position): the trainer makes every position of a training sequence
  a target with its own window, so the paper's per-position losses are the same examples batched differently.
- Trained by the trainer's softmax cross-entropy (full or sampled) rather than the paper's binary
  cross-entropy with one sampled negative per position.

Positions: a T-wide history's column t has position max_len - T + t, so the most recent item is always at
max_len - 1. This is the authors' convention (histories left-padded to max_len) for any T <= max_len, and
makes extra left padding inert. Padding keys are masked out of every softmax; a padding query attends to
itself only (so no softmax row is empty) and its output is zeroed.

Shapes: B batch, T history length, D dim, M items (ids 1..M, id 0 padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sinerec.errors import ConfigError
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.models.ops import init_item_table, right_aligned_positions

__all__ = ["SASRec", "SASRecConfig"]


@dataclass
class SASRecConfig:
    """Settings of :class:`SASRec`; defaults are the paper's ML-1M settings (d = 50, b = 2, h = 1, 0.2)."""

    dim: int = 50
    """D (d in the paper), the size of item and position embeddings and of every hidden layer."""
    num_blocks: int = 2
    """b, stacked self-attention blocks."""
    num_heads: int = 1
    """Attention heads; must divide D (the paper uses a single head)."""
    dropout: float = 0.2
    """Dropout on the embeddings, the attention weights and each sub-layer's output, during training."""

    def __post_init__(self) -> None:
        for name in ("dim", "num_blocks", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"sasrec.{name}: must be an integer >= 1, got {value!r}")
        if self.dim % self.num_heads:
            raise ConfigError(f"sasrec.num_heads: must divide dim ({self.dim}), got {self.num_heads!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"sasrec.dropout: must be in [0, 1), got {self.dropout!r}")


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, Eq. 2-3: Attention(x W^Q, x W^K, x W^V), heads concatenated.

    No output projection: the paper (and its code) has none.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query_key_value = nn.Linear(dim, 3 * dim)  # W^Q, W^K, W^V side by side

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), allowed (B, 1, T, T) bool: query t may attend to key s -> (B, T, D)."""
        batch, length, dim = x.shape
        heads = self.num_heads
        query, key, value = self.query_key_value(x).split(dim, dim=2)  # 3 x (B, T, D)
        query, key, value = (
            part.view(batch, length, heads, dim // heads).transpose(1, 2) for part in (query, key, value)
        )  # 3 x (B, heads, T, D / heads)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )  # (B, heads, T, D / heads)
        return out.transpose(1, 2).reshape(batch, length, dim)  # (B, T, D)


class Block(nn.Module):
    """One self-attention block, each sub-layer g wrapped as x + Dropout(g(LayerNorm(x))) (Sec. III-D)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, num_heads, dropout)
        self.feed_forward_norm = nn.LayerNorm(dim)
        # Eq. 4: F = ReLU(S W1 + b1) W2 + b2, point-wise, width D.
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D)."""
        x = x + self.dropout(self.attention(self.attention_norm(x), allowed))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class SASRec(SequentialRecommender):
    """Causal self-attention; user (B, D) is the final LayerNorm of the most recent position's output."""

    def __init__(self, num_items: int, max_len: int, config: SASRecConfig) -> None:
        super().__init__(num_items)
        self.config = config
        self.max_len = max_len
        dim = config.dim
        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)  # M in the paper, shared
        self.position_embedding = nn.Embedding(max_len, dim)  # P in the paper
        # std D^-1/2: after the sqrt(D) scaling the item inputs have unit scale, and item . user logits start
        # at about unit scale too.
        init_item_table(self.item_embedding, std=dim**-0.5)
        nn.init.normal_(self.position_embedding.weight, std=dim**-0.5)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.dropout) for _ in range(config.num_blocks)
        )
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        """history (B, T) left-padded ids, T <= max_len -> user (B, D)."""
        length = history.shape[1]
        if length > self.max_len:
            raise ValueError(f"sasrec: history has {length} columns, more than max_len={self.max_len}")
        real = history != 0  # (B, T)
        positions = right_aligned_positions(length, self.max_len, history.device)  # (T,)

        items = self.item_embedding(history) * self.config.dim**0.5  # (B, T, D)
        x = self.embedding_dropout(items + self.position_embedding(positions))  # (B, T, D)
        x = x * real.unsqueeze(-1)  # padding positions stay zero

        # Query t may attend to key s if s <= t (causal) and s is a real item; every query also to itself, so
        # that a padding query has a non-empty softmax (its output is zeroed below).
        causal = torch.ones(length, length, dtype=torch.bool, device=history.device).tril()  # (T, T)
        itself = torch.eye(length, dtype=torch.bool, device=history.device)  # (T, T)
        allowed = (causal & real.unsqueeze(1)) | itself  # (B, T, T)
        allowed = allowed.unsqueeze(1)  # (B, 1, T, T), broadcast over heads

        for block in self.blocks:
            x = block(x, allowed) * real.unsqueeze(-1)  # (B, T, D), padding positions back to zero
        return ModelOutput(user=self.final_norm(x[:, -1]))  # (B, D)

    def item_embeddings(self) -> torch.Tensor:
        """(M + 1, D), the same table as the input embeddings (unscaled)."""
        return self.item_embedding.weight
