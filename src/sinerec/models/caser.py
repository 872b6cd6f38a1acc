"""Caser: Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional Sequence Embedding",
WSDM 2018.

The last L items form an L x D "image"; horizontal filters (heights 1..L, full width D, max-pooled over time)
capture union- and point-level sequential patterns, vertical filters (L x 1) weighted sums of the L rows.

Faithful (paper and its reference code, graytowne/caser_pytorch): window L = 5, n_h = 16 horizontal filters
per height 1..L with ReLU and max pooling over time, n_v = 4 vertical filters without activation, dropout 0.5
on the concatenated features, a fully connected ReLU layer to D = 50, output item vectors W' separate from the
input embeddings (``tie_embeddings = False``), embeddings initialised normal with standard deviation 1/D as in
the reference code.

Simplified, and why:
- No user embedding P_u: we have no user ids at inference (cold users, the ``comirec`` protocol's unseen
  users), so z alone is the user vector and the output vectors have D rather than 2D columns.
- No output bias b': scoring must stay an inner product for nearest-neighbour retrieval.
- Trained by the trainer's softmax cross-entropy on the next item, not the paper's binary cross-entropy on the
  next T = 3 items with sampled negatives.
- Histories shorter than L are padded with item 0 (zero rows); a horizontal window that covers a padding row
  is left out of the max pooling (the paper only uses users with at least L items).

L is ``min(config.window, max_len)``. Histories wider than L use their last L columns.

Shapes: B batch, T history length, L window, D dim, M items (ids 1..M, id 0 padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sinerec.errors import ConfigError
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.models.ops import init_item_table

__all__ = ["Caser", "CaserConfig"]


@dataclass
class CaserConfig:
    """Settings of :class:`Caser`; defaults are the paper's (d 50, L 5, n_h 16, n_v 4, dropout 0.5)."""

    dim: int = 50
    """D (d in the paper), the size of item embeddings and of the user vector z."""
    window: int = 5
    """L in the paper: how many most recent items the convolutions see (capped at max_len)."""
    num_horizontal: int = 16
    """n_h, horizontal filters per height h = 1..L."""
    num_vertical: int = 4
    """n_v, vertical filters."""
    dropout: float = 0.5
    """Dropout on the concatenated convolution features, during training."""
    tie_embeddings: bool = False
    """Whether the output item vectors are the input embedding table (False: separate W', as in the paper)."""

    def __post_init__(self) -> None:
        for name in ("dim", "window", "num_horizontal", "num_vertical"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"caser.{name}: must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"caser.dropout: must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ConfigError(f"caser.tie_embeddings: must be true or false, got {self.tie_embeddings!r}")


class Caser(SequentialRecommender):
    """Convolutions over the last L items; user (B, D) is z, the output of the fully connected layer."""

    def __init__(self, num_items: int, max_len: int, config: CaserConfig) -> None:
        super().__init__(num_items)
        self.config = config
        self.max_len = max_len
        self.window = min(config.window, max_len)  # L
        dim, window = config.dim, self.window

        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)  # E, rows of the L x D image
        # One conv per height h = 1..L, each n_h filters of size h x D.
        self.horizontal = nn.ModuleList(
            nn.Conv2d(1, config.num_horizontal, (h, dim)) for h in range(1, window + 1)
        )
        self.vertical = nn.Conv2d(1, config.num_vertical, (window, 1))  # n_v filters of size L x 1
        self.dropout = nn.Dropout(config.dropout)
        self.fully_connected = nn.Linear(config.num_vertical * dim + config.num_horizontal * window, dim)
        self.output_embedding = None if config.tie_embeddings else nn.Embedding(num_items + 1, dim)  # W'
        for table in (self.item_embedding, self.output_embedding):
            if table is not None:
                init_item_table(table, std=1.0 / dim)  # as the reference code: normal_(0, 1 / d)

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        """history (B, T) left-padded ids -> user z (B, D)."""
        window = self.window
        recent = history[:, -window:]  # (B, min(T, L))
        if recent.shape[1] < window:  # a history narrower than L: pad on the left like the rest
            recent = F.pad(recent, (window - recent.shape[1], 0))  # (B, L)
        real = recent != 0  # (B, L)
        image = self.item_embedding(recent).unsqueeze(1)  # (B, 1, L, D), padding rows are zero

        # Vertical convolution: n_v weighted sums of the L rows (no activation, as in the paper's code).
        vertical = self.vertical(image).flatten(1)  # (B, n_v, 1, D) -> (B, n_v * D)

        # Horizontal convolutions: for each height h, ReLU, then max over the L - h + 1 window positions that
        # cover real items only. ReLU outputs are >= 0, so zeroing the other windows before the max leaves it
        # unchanged, and gives 0 when no window is real (a history shorter than h).
        pooled = []
        for height, conv in enumerate(self.horizontal, start=1):
            feature = F.relu(conv(image).squeeze(3))  # (B, n_h, L - h + 1)
            window_real = real.unfold(1, height, 1).all(-1)  # (B, L - h + 1)
            pooled.append((feature * window_real.unsqueeze(1)).amax(2))  # (B, n_h)
        horizontal = torch.cat(pooled, 1)  # (B, n_h * L)

        features = self.dropout(torch.cat([vertical, horizontal], 1))  # (B, n_v * D + n_h * L)
        user = F.relu(self.fully_connected(features))  # (B, D), z in the paper
        return ModelOutput(user=user)

    def item_embeddings(self) -> torch.Tensor:
        """(M + 1, D) output item vectors W' (the input table when ``tie_embeddings``)."""
        table = self.item_embedding if self.output_embedding is None else self.output_embedding
        return table.weight
