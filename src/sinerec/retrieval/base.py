"""The item-index contract: one ``(ids, scores)`` search every backend answers.

Every index holds the item vectors of rows 1..M of a model's ``item_embeddings()`` (M + 1, D) and answers

    search(queries (B, D) float32, k, exclude=None) -> ids (B, k) int64, scores (B, k) float32

by inner product, best first. ``ids`` are item indices 1..M (row 0, padding, is never indexed, so never
returned); where fewer than k items qualify, the tail is padded with id -1 and score -inf. ``exclude`` is one
sequence of item ids per query that must not be returned. ``search_multi`` takes (B, K, D) interest vectors
and ranks by the max over the interests, as :func:`sinerec.ranking.score_items` defines for multi-vector
models, and names the interest behind each item.

This base class validates, and gives candidate backends (those that can only find the n best rows of plain
queries, such as Faiss) the rest: over-fetch then filter for exclusion, ordering by (score descending, id
ascending), padding, and the per-interest search merged by :func:`merge_multi`. The exact backend
(:mod:`sinerec.retrieval.torch_index`) instead hands the whole request to the evaluator's ranking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sinerec.errors import SinerecError
from sinerec.storage import atomic_write_dir

if TYPE_CHECKING:
    from sinerec.retrieval.registry import IndexSettings

__all__ = ["FORMAT", "Exclude", "ItemIndex", "as_float32", "items_fingerprint", "merge_multi", "recall_at_k",
           "vectors_fingerprint"]

FORMAT = "sinerec-index/2"  # 2: the fingerprint covers the indexed rows 1..M, recomputed from them on load

Exclude = Sequence[Sequence[int] | np.ndarray | None] | None


def vectors_fingerprint(item_vectors: np.ndarray | torch.Tensor) -> str:
    """A short hash of a model's (M + 1, D) item vectors: :func:`items_fingerprint` of rows 1..M, the rows an
    index holds (row 0, padding, is never indexed), so that a loaded index can recompute it from its payload."""
    return items_fingerprint(as_float32(item_vectors)[1:])


def items_fingerprint(items: np.ndarray | torch.Tensor) -> str:
    """A short hash (16 hex digits of SHA-256) of (M, D) float32 indexed item vectors, shape included."""
    vectors = np.ascontiguousarray(as_float32(items))
    digest = hashlib.sha256(repr(vectors.shape).encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()[:16]


def as_float32(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy copy (or view) of an array or tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------------------------------------


class ItemIndex:
    """Base class: validation, exclusion, ordering, padding and multi-vector merging live here; a candidate
    backend implements only ``_raw_search`` (the n best rows for plain queries) and ``_write`` (its payload);
    an exact backend may override ``_ranked`` and ``_ranked_multi`` instead of ``_raw_search``."""

    def __init__(self, settings: IndexSettings, dim: int, num_items: int, fingerprint: str) -> None:
        self.settings = settings
        self.dim = dim
        self.num_items = num_items  # M
        self.fingerprint = fingerprint

    # --- for backends -----------------------------------------------------------------------------------

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (B, D) float32 contiguous, 1 <= n <= M -> item ids (B, n') int64 (-1 where none) and
        scores (B, n') float32, n' >= n, in any order: at least the n best of each query."""
        raise NotImplementedError

    def _write(self, folder: Path) -> None:
        raise NotImplementedError

    def stored_items(self) -> np.ndarray:
        """The (M, D) float32 vectors the index holds (items 1..M, in order), as stored: a loaded index's
        fingerprint is recomputed from them, never taken from its header."""
        raise NotImplementedError

    def payload_fingerprint(self) -> str:
        """The fingerprint of the indexed vectors as the payload proves it: by default
        :func:`items_fingerprint` of :meth:`stored_items` (checked for shape (M, D), else ValueError); a
        backend whose payload does not hold the exact vectors overrides it with its own check."""
        stored = self.stored_items()
        if stored.shape != (self.num_items, self.dim):
            raise ValueError(f"the stored vectors have shape {stored.shape}, expected {(self.num_items, self.dim)}")
        return items_fingerprint(stored)

    def with_search_settings(self, nprobe: int | None = None, ef_search: int | None = None) -> ItemIndex:
        """This index with other search-time settings (the built structure is shared, not copied)."""
        settings = self.settings
        if nprobe is not None:
            settings = replace(settings, nprobe=nprobe)
        if ef_search is not None:
            settings = replace(settings, ef_search=ef_search)
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.settings = settings
        return clone

    # --- the contract -----------------------------------------------------------------------------------

    def search(self, queries: np.ndarray | torch.Tensor, k: int,
               exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best items of each query by inner product.

        Args:
            queries: (B, D) float32 (a torch tensor is converted).
            k: list length, >= 1 (may exceed M: the tail is padded).
            exclude: None, or B sequences of item ids (1..M) that query b must not get.
        Returns:
            ids (B, k) int64 in 1..M or -1, and scores (B, k) float32 (-inf with id -1), sorted by score
            descending, ties to the smaller id.
        """
        queries = self._check_queries(queries, 2)
        _check_k(k)
        return self._ranked(queries, int(k), _normalise_exclude(exclude, len(queries)))

    def _ranked(self, queries: np.ndarray, k: int, excluded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` on validated arguments, from ``_raw_search``'s candidates."""
        # Over-fetch by the largest exclusion list so that k items remain after filtering.
        extra = max((len(e) for e in excluded), default=0)
        n = min(int(k) + extra, self.num_items)
        if len(queries) == 0 or n == 0:
            return np.full((len(queries), k), -1, np.int64), np.full((len(queries), k), -np.inf, np.float32)
        ids, scores = self._raw_search(queries, n)
        ids, scores = ids.astype(np.int64, copy=False), scores.astype(np.float32, copy=False)
        scores = np.where(ids < 1, -np.inf, scores).astype(np.float32)
        for row, items in enumerate(excluded):
            if len(items):
                drop = np.isin(ids[row], items)
                ids[row, drop], scores[row, drop] = -1, -np.inf
        return _sort_and_cut(ids, scores, int(k))

    def search_multi(self, queries: np.ndarray | torch.Tensor, k: int,
                     exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Multi-vector search: the k best items by max over each query's K interest vectors.

        Args:
            queries: (B, K, D) float32.
        Returns:
            ids (B, k), scores (B, k) as :meth:`search`, and interest (B, k) int64: the interest (0..K-1)
            whose vector gives the item its score (-1 with id -1).
        """
        queries = self._check_queries(queries, 3)
        _check_k(k)
        return self._ranked_multi(queries, int(k), _normalise_exclude(exclude, len(queries)))

    def _ranked_multi(self, queries: np.ndarray, k: int,
                      excluded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`search_multi` on validated arguments: each interest searched, the lists merged."""
        B, K, D = queries.shape
        flat_exclude = [e for e in excluded for _ in range(K)]  # row b * K + j excludes query b's items
        ids, scores = self._ranked(queries.reshape(B * K, D), k, flat_exclude)
        return merge_multi(ids.reshape(B, K, k), scores.reshape(B, K, k), k)

    def _check_queries(self, queries: np.ndarray | torch.Tensor, ndim: int) -> np.ndarray:
        queries = as_float32(queries)
        if queries.ndim != ndim or queries.shape[-1] != self.dim:
            want = "(B, D)" if ndim == 2 else "(B, K, D)"
            raise SinerecError(f"search: queries must be {want} with D = {self.dim}, got shape {queries.shape}")
        return queries

    # --- persistence ------------------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "backend": self.settings.backend, "settings": asdict(self.settings),
                "dim": self.dim, "num_items": self.num_items, "fingerprint": self.fingerprint}

    def save(self, path: str | Path) -> Path:
        """Write the index folder atomically (layout: :mod:`sinerec.retrieval.registry`); returns the path."""
        def write(folder: Path) -> None:
            self._write(folder)
            (folder / "index.json").write_text(json.dumps(self.header(), indent=2) + "\n")

        return atomic_write_dir(path, write, replaceable=lambda p: (p / "index.json").is_file(),
                                kind="an index folder")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings.describe()}, M={self.num_items}, D={self.dim})"


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SinerecError(f"search: k must be an integer >= 1, got {k!r}")


def _normalise_exclude(exclude: Exclude, rows: int) -> list[np.ndarray]:
    if exclude is None:
        return [np.zeros(0, np.int64)] * rows
    if len(exclude) != rows:
        raise SinerecError(f"search: exclude must hold one list per query ({rows}), got {len(exclude)}")
    return [np.zeros(0, np.int64) if e is None else np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude]


def _sort_and_cut(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by (score desc, id asc) with -1 last, keep k columns, pad with (-1, -inf)."""
    B, n = ids.shape
    # -1 entries carry -inf; a larger-than-any id sends them behind real items that score -inf too.
    tiebreak = np.where(ids < 1, np.iinfo(np.int64).max, ids)
    order = np.lexsort((tiebreak, -scores.astype(np.float64)), axis=-1)[:, :k]  # last key is primary
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    if n < k:
        ids = np.concatenate([ids, np.full((B, k - n), -1, np.int64)], axis=1)
        scores = np.concatenate([scores, np.full((B, k - n), -np.inf, np.float32)], axis=1)
    return ids, scores


def merge_multi(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-interest lists into one list per query, deduplicated, an item keeping its best score.

    Args:
        ids, scores: (B, K, n) the per-interest results (-1 / -inf padding allowed).
    Returns:
        ids (B, k), scores (B, k), interest (B, k): the interest whose list gave the item its best score
        (ties to the smaller interest index); sorted by score descending, ties to the smaller id.
    """
    B, K, n = ids.shape
    out_ids = np.full((B, k), -1, np.int64)
    out_scores = np.full((B, k), -np.inf, np.float32)
    out_interest = np.full((B, k), -1, np.int64)
    interest_of = np.broadcast_to(np.arange(K)[:, None], (K, n)).reshape(-1)
    for b in range(B):
        row_ids, row_scores = ids[b].reshape(-1), scores[b].reshape(-1)
        keep = row_ids >= 1
        row_ids, row_scores, row_interest = row_ids[keep], row_scores[keep], interest_of[keep]
        order = np.lexsort((row_interest, row_ids, -row_scores.astype(np.float64)))
        row_ids, row_scores, row_interest = row_ids[order], row_scores[order], row_interest[order]
        _, first = np.unique(row_ids, return_index=True)  # first occurrence = the item's best score
        first = np.sort(first)[:k]
        out_ids[b, :len(first)] = row_ids[first]
        out_scores[b, :len(first)] = row_scores[first]
        out_interest[b, :len(first)] = row_interest[first]
    return out_ids, out_scores, out_interest


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |approx[:k] & exact[:k]| / |exact[:k]|, ignoring -1 padding (rows whose exact
    list is empty are skipped). approx_ids, exact_ids: (B, >= k) item ids."""
    total, rows = 0.0, 0
    for approx, exact in zip(np.asarray(approx_ids)[:, :k], np.asarray(exact_ids)[:, :k], strict=True):
        truth = set(exact[exact >= 1].tolist())
        if truth:
            total += len(truth & set(approx[approx >= 1].tolist())) / len(truth)
            rows += 1
    return total / rows if rows else 1.0
