"""GRU4Rec: Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016.

In the common sequential form used by later comparisons (SASRec, SINE, RecBole): embed the history, run a
GRU over it from oldest to most recent, and score items with the hidden state after the most recent item.

Faithful: a GRU over the item sequence (one layer of 100 units was the paper's best), dropout (0.5 in the
paper's best settings), a final item-specific output layer: the paper's output weights are separate from the
input, so ``tie_embeddings`` is False by default and ``item_embeddings`` returns the output table.

Simplified, and why:
- Inputs are embeddings, not the paper's one-hot vectors (which it found slightly better, at a cost of M x D
  input weights per layer either way; embeddings are what every later comparison uses). The GRU's hidden size
  is D, the embedding size, so the output table has the same width as the input table and can be tied.
- Dropout applies to the GRU's inputs (and between GRU layers) rather than the paper's hidden layer.
- No session-parallel mini-batches and no TOP1/BPR ranking loss: the trainer's softmax cross-entropy over a
  window of at most T previous items, like every other model here (the paper's successor GRU4Rec variants
  also moved to cross-entropy).
- No output bias: scoring must stay an inner product for nearest-neighbour retrieval.

Padding: the sequence is packed, so the GRU never steps over the left padding. (Left padding cannot simply run
through a GRU: with zero input and zero state its biases still move the state away from zero.)

Shapes: B batch, T history length, D dim (= hidden size), M items (ids 1..M, id 0 padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from sinerec.errors import ConfigError
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.models.ops import init_item_table

__all__ = ["GRU4Rec", "GRU4RecConfig"]


@dataclass
class GRU4RecConfig:
    """Settings of :class:`GRU4Rec`; defaults are the paper's best (100 units, one layer, dropout 0.5)."""

    dim: int = 100
    """D, the size of item embeddings, of the GRU's hidden state and of the output item vectors."""
    num_layers: int = 1
    """Stacked GRU layers (the paper found one best)."""
    dropout: float = 0.5
    """Dropout on the GRU inputs and between layers, during training."""
    tie_embeddings: bool = False
    """Whether the output item vectors are the input embedding table (False: separate, as in the paper)."""

    def __post_init__(self) -> None:
        for name in ("dim", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"gru4rec.{name}: must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"gru4rec.dropout: must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ConfigError(f"gru4rec.tie_embeddings: must be true or false, got {self.tie_embeddings!r}")


class GRU4Rec(SequentialRecommender):
    """GRU over the history; user (B, D) is the hidden state after the most recent item."""

    def __init__(self, num_items: int, max_len: int, config: GRU4RecConfig) -> None:
        super().__init__(num_items)
        self.config = config
        self.max_len = max_len  # unused: a GRU takes any length
        dim = config.dim
        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)  # input table
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            dim,
            dim,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        # W_y in the paper: the final feed-forward layer's item-specific weights (none when tied).
        self.output_embedding = None if config.tie_embeddings else nn.Embedding(num_items + 1, dim)
        for table in (self.item_embedding, self.output_embedding):
            if table is not None:
                init_item_table(table, std=dim**-0.5)

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        """history (B, T) left-padded ids -> user (B, D), the GRU state after the last real item.

        An empty history gives the state after one step on the (zero) padding embedding: finite, the same for
        every empty history.
        """
        length = history.shape[1]
        lengths = (history != 0).sum(1)  # (B,)
        # Left padding -> right padding, as packing wants: row b's column j takes column
        # (j + T - len_b) mod T, which is the j-th real item for j < len_b and a padding column after that.
        steps = torch.arange(length, device=history.device)  # (T,)
        columns = (steps + length - lengths.unsqueeze(1)) % length  # (B, T)
        right_padded = history.gather(1, columns)  # (B, T)

        inputs = self.dropout(self.item_embedding(right_padded))  # (B, T, D)
        packed = pack_padded_sequence(
            inputs, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, last_states = self.gru(packed)  # (layers, B, D), each row's state after its own last step
        return ModelOutput(user=last_states[-1])  # (B, D)

    def item_embeddings(self) -> torch.Tensor:
        """(M + 1, D) output item vectors (the input table when ``tie_embeddings``)."""
        table = self.item_embedding if self.output_embedding is None else self.output_embedding
        return table.weight
