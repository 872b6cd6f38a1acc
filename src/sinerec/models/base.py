"""The interface every model implements, so one trainer and one evaluator serve them all.

Shape letters used across the package: B batch, T history length, D embedding size, M number of items
(ids 1..M; id 0 is padding), L concept prototypes, K interests per user.

A history is a LongTensor (B, T) of item ids, **left-padded** with 0: the most recent item is at [:, -1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What ``forward`` returns.

    Attributes:
        user: (B, D) the vector scored against item embeddings by the training loss (for label-aware models
            such as MIND it depends on the target).
        interests: (B, K, D) the interest vectors, or None for single-vector models.
        extras: model-specific tensors for inspection (SINE: concept ids, gates, P(k|t), aggregation
            weights). Never needed by the trainer or the evaluator.
    """

    user: torch.Tensor
    interests: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] | None = None


class SequentialRecommender(nn.Module):
    """Base class. Subclasses implement ``forward``, ``item_embeddings`` and, if any, ``auxiliary_loss``.

    ``num_items`` is M: valid ids are 1..M, the embedding table has M + 1 rows and row 0 is padding.
    """

    #: Whether retrieval scores an item by the max over K interest vectors (ComiRec, MIND) instead of one vector.
    multi_vector_retrieval: bool = False
    #: Whether the model is fitted by counting (MostPop) rather than by gradient descent.
    trainable: bool = True
    #: Whether ``train.amp = "auto"`` trains it under bf16 autocast on a CPU that computes bf16 in hardware
    #: (``sinerec.runtime.resolve_precision``): only where that was measured faster than float32 at the shipped
    #: batch size and as accurate on validation over three seeds. On CUDA ``auto`` is bf16 for every model.
    cpu_bf16: bool = False

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        """history (B, T) left-padded ids -> ModelOutput. ``target`` (B,) is given only while training."""
        raise NotImplementedError

    def item_embeddings(self) -> torch.Tensor:
        """(M + 1, D) output item vectors; row 0 (padding) is never recommended."""
        raise NotImplementedError

    def item_tables(self) -> list[nn.Embedding]:
        """The embedding modules whose rows are items (input and output tables), which
        ``train.optimizer = "lazy-adam"`` switches to sparse gradients. Default: the ``nn.Embedding``
        attributes ``item_embedding`` and ``output_embedding`` that exist; a model that reads a table's weight
        other than through its module's forward or ``item_embeddings()`` must override this (return [])."""
        tables = (getattr(self, name, None) for name in ("item_embedding", "output_embedding"))
        return [table for table in tables if isinstance(table, nn.Embedding)]

    def auxiliary_loss(self, out: ModelOutput) -> torch.Tensor:
        """Weighted sum of the model's regularisers for a forward output, added to the training loss.

        Zero by default. SINE adds its covariance regulariser on the prototypes (Eq. 10, weighted by lambda)
        and optionally the official code's interest-diversity term on ``out.interests``.
        """
        return out.user.new_zeros(())

    @torch.no_grad()
    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """Retrieval query: (B, D), or (B, K, D) when ``multi_vector_retrieval`` (scored by max over K)."""
        out = self.forward(history)
        if self.multi_vector_retrieval:
            assert out.interests is not None
            return out.interests
        return out.user

    def fit_counts(self, sequences: list[torch.Tensor] | None = None, items: torch.Tensor | None = None) -> None:
        """Hook for models fitted by counting; ``items`` is every training interaction's item id (N,)."""
