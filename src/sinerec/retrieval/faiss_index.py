"""Faiss backends: ``flat`` (exact, an alternative to the torch index), ``ivf`` and ``hnsw`` (approximate).

- ``flat``: ``IndexFlatIP``, exact. Faiss finds the best n + ``FLAT_MARGIN`` candidates, then their scores are
  recomputed with one summation order for every item, because Faiss's kernels can round the same inner
  product differently at different positions, so that two identical vectors would not tie. Scores of
  *different* vectors that agree to about 1e-7 relative may still be ordered differently from torch's matrix
  product (and a tie group larger than the margin at the cut may lose its smaller ids).
- ``ivf``: ``IndexIVFFlat`` (``nlist`` k-means cells, ``nprobe`` visited per query); exact when
  ``nprobe >= nlist``.
- ``hnsw``: ``IndexHNSWFlat`` (``hnsw_m`` links per node, ``ef_construction``, ``ef_search``); exact in
  practice when ``ef_search`` exceeds M on a small catalogue.

Faiss position p holds item p + 1 (row 0, padding, is not indexed). Saved payload: ``INDEX/index.faiss``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sinerec.errors import SinerecError
from sinerec.retrieval.base import ItemIndex

if TYPE_CHECKING:
    from sinerec.retrieval.registry import IndexSettings

__all__ = ["FLAT_MARGIN", "FaissIndex", "build_flat", "build_hnsw", "build_ivf", "faiss_available", "load_faiss",
           "require_faiss"]

FLAT_MARGIN = 16  # extra candidates whose scores the flat backend recomputes, to settle ties at the cut


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require_faiss(backend: str) -> Any:
    """The faiss module, or a SinerecError naming the backend that needs it."""
    try:
        import faiss
    except ImportError as exc:
        raise SinerecError(f"index backend {backend!r} needs Faiss: pip install 'sinerec[faiss]' "
                           "(or use --backend torch)") from exc
    return faiss


class FaissIndex(ItemIndex):
    """flat, ivf or hnsw: a Faiss index over rows 1..M; Faiss position p holds item p + 1."""

    def __init__(self, index: Any, settings: IndexSettings, num_items: int, fingerprint: str) -> None:
        super().__init__(settings, index.d, num_items, fingerprint)
        self.index = index
        self._vectors: np.ndarray | None = None  # flat: a (M, D) view of the stored vectors, for rescoring
        if settings.backend == "flat":
            faiss = require_faiss("flat")
            flat = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)
            self._vectors = np.asarray(flat).reshape(index.ntotal, index.d)

    def _params(self, n: int) -> Any:
        # Per-call parameters instead of index.nprobe / hnsw.efSearch: searches from many server threads
        # never race on shared state.
        faiss = require_faiss(self.settings.backend)
        if self.settings.backend == "ivf":
            return faiss.SearchParametersIVF(nprobe=self.settings.nprobe)
        if self.settings.backend == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.settings.ef_search, n))
        return None

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        params = self._params(n)
        if self._vectors is not None:
            n = min(n + FLAT_MARGIN, self.num_items)
        scores, positions = (self.index.search(queries, n) if params is None
                             else self.index.search(queries, n, params=params))
        if self._vectors is not None:  # flat: rescore, one summation order for every candidate (see above)
            candidates = self._vectors[np.clip(positions, 0, None)]  # (B, n, D)
            scores = np.where(positions >= 0, (candidates * queries[:, None, :]).sum(-1), -np.inf)
        return np.where(positions >= 0, positions + 1, -1), scores

    def stored_items(self) -> np.ndarray:
        faiss = require_faiss(self.settings.backend)
        if self.settings.backend == "ivf":
            faiss.extract_index_ivf(self.index).make_direct_map()  # IVF lists are reconstructed by id
        return np.asarray(self.index.reconstruct_n(0, self.index.ntotal), dtype=np.float32)

    def _write(self, folder: Path) -> None:
        require_faiss(self.settings.backend).write_index(self.index, str(folder / "index.faiss"))


def build_flat(item_vectors: np.ndarray, settings: IndexSettings, fingerprint: str) -> FaissIndex:
    """item_vectors: (M + 1, D) float32 contiguous; row 0 is left out."""
    index = require_faiss("flat").IndexFlatIP(item_vectors.shape[1])
    index.add(item_vectors[1:])
    return FaissIndex(index, settings, item_vectors.shape[0] - 1, fingerprint)


def build_ivf(item_vectors: np.ndarray, settings: IndexSettings, fingerprint: str) -> FaissIndex:
    """k-means on up to ``train_size`` items sampled with ``seed``; ``nlist`` is clipped to M."""
    faiss = require_faiss("ivf")
    items, (num_items, dim) = item_vectors[1:], (item_vectors.shape[0] - 1, item_vectors.shape[1])
    settings = replace(settings, nlist=min(settings.nlist, num_items))
    quantizer = faiss.IndexFlatIP(dim)
    # Faiss's Python wrapper keeps the quantizer alive as long as the index.
    index = faiss.IndexIVFFlat(quantizer, dim, settings.nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(settings.seed)
    sample = items if num_items <= settings.train_size else \
        items[np.sort(rng.choice(num_items, settings.train_size, replace=False))]
    index.train(sample)
    index.add(items)
    return FaissIndex(index, settings, num_items, fingerprint)


def build_hnsw(item_vectors: np.ndarray, settings: IndexSettings, fingerprint: str) -> FaissIndex:
    faiss = require_faiss("hnsw")
    index = faiss.IndexHNSWFlat(item_vectors.shape[1], settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = settings.ef_construction
    index.add(item_vectors[1:])
    return FaissIndex(index, settings, item_vectors.shape[0] - 1, fingerprint)


def load_faiss(folder: Path, settings: IndexSettings, fingerprint: str) -> FaissIndex:
    faiss = require_faiss(settings.backend)
    # A flat index's vectors are memory-mapped, read-only and shared: server workers loading the same file
    # share one copy in memory (Faiss maps the codes of flat indexes only).
    flags = faiss.IO_FLAG_MMAP_IFC if settings.backend == "flat" else 0
    raw = faiss.read_index(str(folder / "index.faiss"), flags)
    return FaissIndex(raw, settings, raw.ntotal, fingerprint)
