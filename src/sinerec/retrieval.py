"""Nearest-neighbour item indexes behind one ``(ids, scores)`` search contract.

Every index holds the item vectors of rows 1..M of a model's ``item_embeddings()`` (M + 1, D) and answers

    search(queries (B, D) float32, k, exclude=None) -> ids (B, k) int64, scores (B, k) float32

by inner product, best first. ``ids`` are item indices 1..M (row 0, padding, is never indexed, so never
returned); where fewer than k items qualify, the tail is padded with id -1 and score -inf. ``exclude`` is one
sequence of item ids per query that must not be returned (over-fetch then filter, so it is exact for exact
backends). ``search_multi`` takes (B, K, D) interest vectors, searches each interest and merges by score with
items deduplicated: an item's score is its best interest's, as :func:`sinerec.evaluate.score_items` defines
for multi-vector models.

Backends (:class:`IndexSettings.backend`):

- ``flat``: Faiss ``IndexFlatIP``, exact.
- ``torch``: :func:`sinerec.evaluate.topk_items`, exact, the offline evaluator's own ranking; needs no Faiss.
- ``exact``: ``flat`` when Faiss is installed, else ``torch``.
- ``ivf``: Faiss ``IndexIVFFlat`` (``nlist`` k-means cells, ``nprobe`` visited per query); exact when
  ``nprobe >= nlist``.
- ``hnsw``: Faiss ``IndexHNSWFlat`` (``hnsw_m`` links per node, ``ef_construction``, ``ef_search``); exact in
  practice when ``ef_search`` exceeds M on a small catalogue.

Ties: every backend returns its list sorted by (score descending, id ascending). The exact backends agree
with ``topk_items``, ties to the smaller id included, also at the k-th place (tested with repeated
vectors): ``torch`` is ``topk_items``; ``flat`` lets Faiss find the best n + ``FLAT_MARGIN`` candidates,
then recomputes their scores with one summation order for every item, because Faiss's kernels can round
the same inner product differently at different positions, so that two identical vectors would not tie.
Scores of *different* vectors that agree to about 1e-7 relative may still be ordered differently from
torch's matrix product (and a tie group larger than the margin at the cut may lose its smaller ids).

Saved indexes are folders, written to a temporary folder and renamed into place (a failed save leaves the
old index as it was):

    INDEX/index.json    header: format, backend, settings, dim, num_items, fingerprint of the vectors
    INDEX/index.faiss   the Faiss index (flat, ivf, hnsw), or INDEX/vectors.npy (torch): (M + 1, D) float32
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sinerec.errors import ConfigError, SinerecError
from sinerec.storage import atomic_write_dir

__all__ = ["BACKENDS", "EXACT_BACKENDS", "IndexSettings", "ItemIndex", "build_index", "faiss_available",
           "load_index", "merge_multi", "recall_at_k", "vectors_fingerprint"]

BACKENDS = ("exact", "flat", "torch", "ivf", "hnsw")
FLAT_MARGIN = 16  # extra candidates whose scores the flat backend recomputes, to settle ties at the cut
EXACT_BACKENDS = ("flat", "torch")
FORMAT = "sinerec-index/1"

Exclude = Sequence[Sequence[int] | np.ndarray | None] | None


@dataclass(frozen=True)
class IndexSettings:
    """How to build (and search) an index. Search-time fields (``nprobe``, ``ef_search``) can be changed on
    a loaded index with :meth:`ItemIndex.with_search_settings`."""

    backend: str = "exact"  # exact | flat | torch | ivf | hnsw
    nlist: int = 1024  # ivf: k-means cells (clipped to M)
    nprobe: int = 32  # ivf: cells visited per query
    hnsw_m: int = 32  # hnsw: links per node
    ef_construction: int = 200  # hnsw: candidate list while building
    ef_search: int = 128  # hnsw: candidate list while searching (raised to the fetch size when smaller)
    train_size: int = 262_144  # ivf: vectors sampled for k-means training
    seed: int = 0  # ivf: which vectors are sampled for training

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"index.backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for key in ("nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search", "train_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"index.{key}: must be an integer >= 1, got {value!r}")

    def describe(self) -> dict[str, Any]:
        """The settings that matter for this backend (for headers, logs and benchmark tables)."""
        keys = {"ivf": ("nlist", "nprobe", "train_size", "seed"),
                "hnsw": ("hnsw_m", "ef_construction", "ef_search")}.get(self.backend, ())
        return {"backend": self.backend, **{key: getattr(self, key) for key in keys}}


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss(backend: str) -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise SinerecError(f"index backend {backend!r} needs Faiss: pip install 'sinerec[faiss]' "
                           "(or use --backend torch)") from exc
    return faiss


def vectors_fingerprint(item_vectors: np.ndarray | torch.Tensor) -> str:
    """A short hash of the (M + 1, D) float32 item vectors: an index built from other vectors is refused."""
    vectors = _as_float32(item_vectors)
    digest = hashlib.sha256(repr(vectors.shape).encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()[:16]


def _as_float32(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------------------------------------


class ItemIndex:
    """Base class: validation, exclusion, ordering, padding and multi-vector merging live here; a backend
    implements only ``_raw_search`` (the n best rows for plain queries) and ``_write`` (its payload)."""

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
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise SinerecError(f"search: k must be an integer >= 1, got {k!r}")
        excluded = _normalise_exclude(exclude, len(queries))
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
        B, K, D = queries.shape
        excluded = _normalise_exclude(exclude, B)
        flat_exclude = [e for e in excluded for _ in range(K)]  # row b * K + j excludes query b's items
        ids, scores = self.search(queries.reshape(B * K, D), k, flat_exclude)
        return merge_multi(ids.reshape(B, K, k), scores.reshape(B, K, k), k)

    def _check_queries(self, queries: np.ndarray | torch.Tensor, ndim: int) -> np.ndarray:
        queries = _as_float32(queries)
        if queries.ndim != ndim or queries.shape[-1] != self.dim:
            want = "(B, D)" if ndim == 2 else "(B, K, D)"
            raise SinerecError(f"search: queries must be {want} with D = {self.dim}, got shape {queries.shape}")
        return queries

    # --- persistence ------------------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "backend": self.settings.backend, "settings": asdict(self.settings),
                "dim": self.dim, "num_items": self.num_items, "fingerprint": self.fingerprint}

    def save(self, path: str | Path) -> Path:
        """Write the index folder atomically (see the module docstring); returns the path."""
        def write(folder: Path) -> None:
            self._write(folder)
            (folder / "index.json").write_text(json.dumps(self.header(), indent=2) + "\n")

        return atomic_write_dir(path, write, replaceable=lambda p: (p / "index.json").is_file(),
                                kind="an index folder")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings.describe()}, M={self.num_items}, D={self.dim})"


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


# ---------------------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------------------


class TorchIndex(ItemIndex):
    """Exact search by :func:`sinerec.evaluate.topk_items`: the offline evaluator's ranking itself."""

    def __init__(self, item_vectors: np.ndarray, settings: IndexSettings, fingerprint: str) -> None:
        super().__init__(settings, item_vectors.shape[1], item_vectors.shape[0] - 1, fingerprint)
        self.item_vectors = torch.from_numpy(item_vectors)  # (M + 1, D), row 0 padding

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        from sinerec.evaluate import topk_items

        with torch.inference_mode():
            ids, scores = topk_items(torch.from_numpy(queries), self.item_vectors, n)
        return ids.numpy(), scores.numpy()

    def _write(self, folder: Path) -> None:
        np.save(folder / "vectors.npy", self.item_vectors.numpy())


class FaissIndex(ItemIndex):
    """flat, ivf or hnsw: a Faiss index over rows 1..M; Faiss position p holds item p + 1."""

    def __init__(self, index: Any, settings: IndexSettings, num_items: int, fingerprint: str) -> None:
        super().__init__(settings, index.d, num_items, fingerprint)
        self.index = index
        self._vectors: np.ndarray | None = None  # flat: a (M, D) view of the stored vectors, for rescoring
        if settings.backend == "flat":
            faiss = _faiss("flat")
            flat = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)
            self._vectors = np.asarray(flat).reshape(index.ntotal, index.d)

    def _params(self, n: int) -> Any:
        # Per-call parameters instead of index.nprobe / hnsw.efSearch: searches from many server threads
        # never race on shared state.
        faiss = _faiss(self.settings.backend)
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

    def _write(self, folder: Path) -> None:
        _faiss(self.settings.backend).write_index(self.index, str(folder / "index.faiss"))


def build_index(item_vectors: np.ndarray | torch.Tensor, settings: IndexSettings | None = None) -> ItemIndex:
    """Build an index over rows 1..M of ``item_vectors`` (M + 1, D); row 0 (padding) is left out."""
    settings = settings or IndexSettings()
    vectors = _as_float32(item_vectors)
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise SinerecError(f"build_index: item vectors must be (M + 1, D) with M >= 1, got {vectors.shape}")
    if settings.backend == "exact":
        settings = replace(settings, backend="flat" if faiss_available() else "torch")
    fingerprint = vectors_fingerprint(vectors)
    num_items, dim = vectors.shape[0] - 1, vectors.shape[1]
    if settings.backend == "torch":
        return TorchIndex(vectors, settings, fingerprint)
    faiss = _faiss(settings.backend)
    items = vectors[1:]  # (M, D)
    if settings.backend == "flat":
        index = faiss.IndexFlatIP(dim)
    elif settings.backend == "ivf":
        nlist = min(settings.nlist, num_items)
        settings = replace(settings, nlist=nlist)
        quantizer = faiss.IndexFlatIP(dim)
        # Faiss's Python wrapper keeps the quantizer alive as long as the index.
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(settings.seed)
        sample = items if num_items <= settings.train_size else \
            items[np.sort(rng.choice(num_items, settings.train_size, replace=False))]
        index.train(sample)
    else:  # hnsw
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.ef_construction
    index.add(items)
    return FaissIndex(index, settings, num_items, fingerprint)


def load_index(path: str | Path, expected_fingerprint: str | None = None, nprobe: int | None = None,
               ef_search: int | None = None) -> ItemIndex:
    """Load an index folder written by :meth:`ItemIndex.save`.

    ``expected_fingerprint`` (``vectors_fingerprint`` of the model's item vectors) refuses an index built
    from other vectors; ``nprobe`` / ``ef_search`` override the saved search settings.
    """
    path = Path(path)
    if not (path / "index.json").is_file():
        raise SinerecError(f"{path}: not an index folder (index.json is missing)")
    header = json.loads((path / "index.json").read_text())
    if header.get("format") != FORMAT:
        raise SinerecError(f"{path}: unknown index format {header.get('format')!r} (expected {FORMAT!r})")
    settings = IndexSettings(**header["settings"])
    fingerprint, num_items, dim = header["fingerprint"], int(header["num_items"]), int(header["dim"])
    if expected_fingerprint is not None and fingerprint != expected_fingerprint:
        raise SinerecError(f"{path}: the index was built from other item vectors (fingerprint {fingerprint}, "
                           f"the model's is {expected_fingerprint}); rebuild it with `sinerec index build`")
    index: ItemIndex
    if settings.backend == "torch":
        vectors = np.load(path / "vectors.npy")
        index = TorchIndex(np.ascontiguousarray(vectors, dtype=np.float32), settings, fingerprint)
    else:
        raw = _faiss(settings.backend).read_index(str(path / "index.faiss"))
        index = FaissIndex(raw, settings, num_items, fingerprint)
    if index.num_items != num_items or index.dim != dim or \
            (isinstance(index, FaissIndex) and index.index.ntotal != num_items):
        raise SinerecError(f"{path}: index.json says M={num_items}, D={dim} but the stored index differs")
    return index.with_search_settings(nprobe=nprobe, ef_search=ef_search)
