"""YouTube DNN candidate generation: Covington, Adams & Sargin, "Deep Neural Networks for YouTube
Recommendations", RecSys 2016.

The user vector u is a tower of ReLU layers over the average of the embeddings of the watched videos, trained
as an extreme multiclass softmax over the next watch, served by nearest-neighbour search over item vectors.

Faithful: the masked mean of the history's item embeddings ("embedded video watches", averaged because the
paper found the average best among the poolings it tried), a feed-forward tower of fully connected ReLU layers
whose top layer is u, inner-product scoring against item vectors.

Simplified, and why:
- Only the watch history is an input: we have no search tokens, geography, age, gender or "example age"
  features (the paper concatenates them with the pooled watches).
- The softmax's item vectors are the input embedding table (shared). The paper does not say whether its
  "video vectors" are tied to the "embedded video watches"; sharing halves the parameters and is what common
  re-implementations (DeepMatch, torch-rechub) do.
- The tower's widths are a setting (the paper's towers are 1024 -> 512 -> 256 on a 256-dim u); the top layer
  has D units so that u lives in the item space.
- Training follows the trainer's protocol (next item after a window of at most T items), not the paper's
  sampling of a fixed number of examples per user.

Shapes: B batch, T history length, D dim, M items (ids 1..M, id 0 padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sinerec.errors import ConfigError
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.models.ops import init_item_table

__all__ = ["YouTubeDNN", "YouTubeDNNConfig"]


@dataclass
class YouTubeDNNConfig:
    """Settings of :class:`YouTubeDNN`."""

    dim: int = 64
    """D, the size of item embeddings and of the user vector u (the top ReLU layer)."""
    hidden_dims: tuple[int, ...] = (256, 128)
    """Widths of the ReLU layers between the pooled history and the top layer (empty: one layer D -> D)."""
    dropout: float = 0.0
    """Dropout on the pooled history during training (the paper uses none)."""

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(self.hidden_dims)  # a TOML file gives a list
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ConfigError(f"youtubednn.dim: must be an integer >= 1, got {self.dim!r}")
        for width in self.hidden_dims:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ConfigError(
                    f"youtubednn.hidden_dims: widths must be integers >= 1, got {self.hidden_dims!r}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"youtubednn.dropout: must be in [0, 1), got {self.dropout!r}")


class YouTubeDNN(SequentialRecommender):
    """Mean-pooled history -> ReLU tower -> user vector u (B, D). Order-agnostic: ignores positions."""

    def __init__(self, num_items: int, max_len: int, config: YouTubeDNNConfig) -> None:
        super().__init__(num_items)
        self.config = config
        self.max_len = max_len  # unused: the mean ignores order and length
        dim = config.dim
        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)  # shared input / output table
        init_item_table(self.item_embedding, std=dim**-0.5)

        widths = [dim, *config.hidden_dims, dim]
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]  # the paper's tower: ReLU on every layer, u too
        self.tower = nn.Sequential(*layers)

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        """history (B, T) left-padded ids -> user u (B, D)."""
        real = (history != 0).unsqueeze(-1)  # (B, T, 1)
        watches = self.item_embedding(history) * real  # (B, T, D), padding rows are zero anyway
        # Masked mean; an empty history averages to the zero vector.
        pooled = watches.sum(1) / real.sum(1).clamp(min=1)  # (B, D)
        return ModelOutput(user=self.tower(pooled))  # (B, D)

    def item_embeddings(self) -> torch.Tensor:
        """(M + 1, D), the same table as the input embeddings."""
        return self.item_embedding.weight
