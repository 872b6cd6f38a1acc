"""The exact index: the offline evaluator's own ranking, needing nothing beyond torch.

Every search is one call of :func:`sinerec.ranking.topk_items` with the history exclusion of
:func:`sinerec.ranking.sequences_exclusion`; multi-vector queries are ranked by the max over their interests
in that same call, and :func:`sinerec.ranking.interest_behind` names the interest behind each item. The
functions are looked up on the module at call time, so the evaluator and this index run the same objects.

Saved payload: ``INDEX/vectors.npy``, the (M + 1, D) float32 item vectors. A saved index is loaded as a
copy-on-write memory map of that file: the pages come from the OS page cache, so several server workers that
load the same index share one copy in memory (a write, which no search makes, would copy only its page).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sinerec import ranking
from sinerec.retrieval.base import ItemIndex

if TYPE_CHECKING:
    from sinerec.retrieval.registry import IndexSettings

__all__ = ["TorchIndex"]


class TorchIndex(ItemIndex):
    """Exact search by :func:`sinerec.ranking.topk_items`: the offline evaluator's ranking itself."""

    def __init__(self, item_vectors: np.ndarray, settings: IndexSettings, fingerprint: str) -> None:
        super().__init__(settings, item_vectors.shape[1], item_vectors.shape[0] - 1, fingerprint)
        self.item_vectors = torch.from_numpy(item_vectors)  # (M + 1, D), row 0 padding

    @classmethod
    def build(cls, item_vectors: np.ndarray, settings: IndexSettings, fingerprint: str) -> TorchIndex:
        """item_vectors: (M + 1, D) float32 contiguous."""
        return cls(item_vectors, settings, fingerprint)

    @classmethod
    def load(cls, folder: Path, settings: IndexSettings, fingerprint: str) -> TorchIndex:
        """Memory-map ``folder/vectors.npy`` (copy-on-write: writable for torch, yet never copied to private
        memory unless written); a file that is not float32 C-order is converted, and so read into memory."""
        vectors = np.load(folder / "vectors.npy", mmap_mode="c")
        if vectors.dtype != np.float32 or not vectors.flags.c_contiguous:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return cls(vectors, settings, fingerprint)

    def _ranked(self, queries: np.ndarray, k: int, excluded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self._topk(queries, k, excluded)
        return ids.numpy(), scores.numpy()

    def _ranked_multi(self, queries: np.ndarray, k: int,
                      excluded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, scores = self._topk(queries, k, excluded)  # max over the K interests, as the evaluator scores
        interest = ranking.interest_behind(torch.from_numpy(queries), self.item_vectors, ids)
        return ids.numpy(), scores.numpy(), interest.numpy()

    def _topk(self, queries: np.ndarray, k: int, excluded: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, D) or (B, K, D) -> ids (B, k) long, scores (B, k) float32."""
        rows, items = ranking.sequences_exclusion(excluded)
        with torch.inference_mode():
            return ranking.topk_items(torch.from_numpy(queries), self.item_vectors, k, rows, items)

    def stored_items(self) -> np.ndarray:
        return self.item_vectors[1:].numpy()

    def _write(self, folder: Path) -> None:
        np.save(folder / "vectors.npy", self.item_vectors.numpy())
