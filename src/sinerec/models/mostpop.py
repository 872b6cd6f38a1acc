"""MostPop: recommend the items with the most training interactions, the same list for every user.

The non-personalised reference row of every table (e.g. Kang & McAuley, "Self-Attentive Sequential
Recommendation", ICDM 2018, and most of the sequential-recommendation literature). Nothing to learn: it is
fitted by counting (``trainable = False``, ``fit_counts``).

So that the generic evaluator serves it like any vector model, MostPop is written as a one-dimensional
inner product: every user vector is ``[1.0]`` and item j's "embedding" is ``[count_j]``, so the score of item
j is its training count. Ties between equal counts are broken by the evaluator (smaller id first), not here.

The counts are kept as a float32 buffer (so they move with ``.to(device)``, are saved in ``state_dict`` and
multiply with float32 user vectors). float32 holds every integer up to 2**24 = 16,777,216 exactly; above that,
counts are rounded to a multiple of 2 or more, which can only merge items whose counts differ by a few out of
tens of millions into a tie.

Shapes: B batch, T history length, M items (ids 1..M; id 0 is padding and always scores 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sinerec.models.base import ModelOutput, SequentialRecommender

__all__ = ["MostPop", "MostPopConfig"]


@dataclass
class MostPopConfig:
    """MostPop has no settings."""


class MostPop(SequentialRecommender):
    """Scores item j by its number of training interactions, whatever the history.

    Has no parameters (only the ``counts`` buffer), so code that finds a model's device with
    ``next(model.parameters())`` must use a buffer for it instead.
    """

    trainable = False
    counts: torch.Tensor  # a registered buffer

    def __init__(self, num_items: int, max_len: int, config: MostPopConfig | None = None) -> None:
        super().__init__(num_items)
        self.config = config if config is not None else MostPopConfig()
        self.max_len = max_len  # unused: the score ignores the history
        self.register_buffer("counts", torch.zeros(num_items + 1))  # (M + 1,) float32, row 0 stays 0

    def fit_counts(
        self, sequences: list[torch.Tensor] | None = None, items: torch.Tensor | None = None
    ) -> None:
        """Replace the counts with those of ``items`` (N,), every training interaction's item id.

        ``sequences`` (a list of id tensors) is accepted instead of ``items``; giving both is an error, since
        counting both would count every interaction twice. Zeros (padding) are ignored.
        """
        if (items is None) == (sequences is None):
            raise ValueError("mostpop.fit_counts: give exactly one of items= or sequences=")
        if items is None:
            assert sequences is not None
            items = torch.cat([s.reshape(-1) for s in sequences]) if sequences else torch.zeros(0)
        ids = items.reshape(-1).long().cpu()  # (N,)
        ids = ids[ids != 0]
        if ids.numel() and (ids.min() < 0 or ids.max() > self.num_items):
            bad = ids[(ids < 0) | (ids > self.num_items)][0].item()
            raise ValueError(f"mostpop.fit_counts: item id {bad} outside 1..{self.num_items}")
        counts = torch.bincount(ids, minlength=self.num_items + 1)  # (M + 1,) int64
        self.counts.copy_(counts.to(self.counts.dtype))

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        """history (B, T) -> user (B, 1) of ones: every user gets the same ranking."""
        user = self.counts.new_ones((history.shape[0], 1))  # (B, 1)
        return ModelOutput(user=user)

    def item_embeddings(self) -> torch.Tensor:
        """(M + 1, 1): the training count of each item (0 for the padding row)."""
        return self.counts.unsqueeze(1)
