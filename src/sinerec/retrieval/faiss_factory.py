"""The ``factory`` backend: any Faiss index from an index-factory string, by inner product.

``IndexSettings.factory`` is the string Faiss's ``index_factory`` reads (``"Flat"``, ``"IVF4096,PQ32"``,
``"OPQ16,IVF4096,PQ16"``, ``"HNSW32"``, ...); the index is trained on at most ``train_size`` item vectors
sampled with ``seed`` and then holds every item 1..M (Faiss position p holds item p + 1). Search-time
settings reach the index per call, never through shared state: ``nprobe`` where the index has inverted
lists (IVF), ``ef_search`` (raised to the fetch size) where it has an HNSW graph, through an OPQ / PCA
pre-transform too.

Whether a search is exact depends on the string: ``"Flat"`` is exact; ``"IVFn,Flat"`` is exact with
``nprobe >= n``; quantised codes (``PQ``, ``SQ``) are approximate: their scores are computed from the codes,
not from the model's vectors.

Saved payload and its fingerprint. A quantised index does not hold the model's vectors, so the fingerprint
cannot be recomputed from them on load. Instead the build's fingerprint is recorded beside the payload, bound
to it: ``INDEX/payload.json`` holds ``{"fingerprint": F, "sha256": H}`` where H is the SHA-256 of F followed
by the bytes of ``INDEX/index.faiss``. :func:`load_factory` recomputes H from F and the file (a swapped or
edited ``index.faiss``, or an edited F, is refused), and F is then the payload's fingerprint that
``load_index`` compares with index.json's claim and with the model's, as for every backend. As for the other
backends, this detects mixing and editing, not a deliberate forgery. Hashing reads the file once in chunks
(about 1 s per GB).

Memory-mapped loading: the file is read with ``IO_FLAG_MMAP | IO_FLAG_MMAP_IFC``: the inverted lists of an
IVF index (the codes and ids, nearly all of its size) and the codes of a flat index are mapped read-only from
``index.faiss``, so that serving processes loading the same file share one copy in memory. The coarse
quantizer, the PQ / OPQ tables and an HNSW graph are small or not mappable by Faiss and are read into memory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sinerec.errors import ConfigError, SinerecError
from sinerec.retrieval.base import ItemIndex
from sinerec.retrieval.faiss_index import require_faiss

if TYPE_CHECKING:
    from sinerec.retrieval.registry import IndexSettings

__all__ = ["FactoryIndex", "build_factory", "load_factory", "payload_digest"]

PAYLOAD = "payload.json"  # the fingerprint the index was built from, bound to index.faiss by a SHA-256
CHUNK = 1 << 22  # bytes hashed at a time: a 10M-item index is never read into memory at once


def payload_digest(fingerprint: str, payload: Path) -> str:
    """SHA-256 (hex) of ``fingerprint`` followed by the bytes of ``payload``, read in chunks."""
    digest = hashlib.sha256(fingerprint.encode())
    with open(payload, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FactoryIndex(ItemIndex):
    """A Faiss index built from ``settings.factory``; position p holds item p + 1."""

    def __init__(self, index: Any, settings: IndexSettings, num_items: int, fingerprint: str) -> None:
        super().__init__(settings, index.d, num_items, fingerprint)
        self.index = index
        faiss = require_faiss("factory")
        inner = faiss.downcast_index(index)
        self._pretransform = isinstance(inner, faiss.IndexPreTransform)
        if self._pretransform:
            inner = faiss.downcast_index(inner.index)
        self._ivf = faiss.try_extract_index_ivf(inner) is not None
        self._hnsw = hasattr(inner, "hnsw")

    def _params(self, n: int) -> Any:
        faiss = require_faiss("factory")
        if self._ivf:
            params = faiss.SearchParametersIVF(nprobe=self.settings.nprobe)
        elif self._hnsw:
            params = faiss.SearchParametersHNSW(efSearch=max(self.settings.ef_search, n))
        else:
            return None
        return faiss.SearchParametersPreTransform(index_params=params) if self._pretransform else params

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        params = self._params(n)
        scores, positions = (self.index.search(queries, n) if params is None
                             else self.index.search(queries, n, params=params))
        return np.where(positions >= 0, positions + 1, -1), scores

    def payload_fingerprint(self) -> str:
        # A loaded index's is the one payload.json records, checked against index.faiss by load_factory.
        return self.fingerprint

    def _write(self, folder: Path) -> None:
        require_faiss("factory").write_index(self.index, str(folder / "index.faiss"))
        record = {"fingerprint": self.fingerprint, "sha256": payload_digest(self.fingerprint, folder / "index.faiss")}
        (folder / PAYLOAD).write_text(json.dumps(record) + "\n")


def build_factory(item_vectors: np.ndarray, settings: IndexSettings, fingerprint: str) -> FactoryIndex:
    """item_vectors: (M + 1, D) float32 contiguous; row 0 is left out. A string Faiss cannot build for this
    D (e.g. PQ32 with D = 48) or M (more IVF cells than training vectors) is a ConfigError naming it."""
    faiss = require_faiss("factory")
    items, (num_items, dim) = item_vectors[1:], (item_vectors.shape[0] - 1, item_vectors.shape[1])
    try:
        index = faiss.index_factory(dim, settings.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ConfigError(f"index.factory: Faiss cannot build {settings.factory!r} for D = {dim} "
                          f"({_first_line(exc)})") from exc
    for part in _parts(faiss, index):
        if hasattr(part, "do_polysemous_training"):  # codes ordered for Hamming filtering: unused, and slow
            part.do_polysemous_training = False
    if not index.is_trained:
        rng = np.random.default_rng(settings.seed)
        sample = items if num_items <= settings.train_size else \
            items[np.sort(rng.choice(num_items, settings.train_size, replace=False))]
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise ConfigError(f"index.factory: training {settings.factory!r} on {len(sample)} vectors failed "
                              f"({_first_line(exc)})") from exc
    index.add(items)
    return FactoryIndex(index, settings, num_items, fingerprint)


def load_factory(folder: Path, settings: IndexSettings, fingerprint: str) -> FactoryIndex:
    """Map ``folder/index.faiss`` (see the module docstring) after checking it against payload.json; the
    index's fingerprint is payload.json's (``fingerprint``, index.json's claim, is checked by load_index)."""
    faiss = require_faiss("factory")
    payload = folder / "index.faiss"
    record = json.loads((folder / PAYLOAD).read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("fingerprint", "sha256")):
        raise ValueError(f"{PAYLOAD} should hold the strings 'fingerprint' and 'sha256'")
    if payload_digest(record["fingerprint"], payload) != record["sha256"]:
        raise SinerecError(f"{folder}: index.faiss does not match {PAYLOAD} (fingerprint {record['fingerprint']}): "
                           "the folder was edited or mixed; rebuild it with `sinerec index build`")
    # Faiss maps either IVF lists (IO_FLAG_MMAP) or flat codes (IO_FLAG_MMAP_IFC), not both in one read.
    flags = faiss.IO_FLAG_MMAP if "IVF" in settings.factory.upper() else faiss.IO_FLAG_MMAP_IFC
    raw = faiss.read_index(str(payload), flags)
    return FactoryIndex(raw, settings, raw.ntotal, record["fingerprint"])


def _parts(faiss: Any, index: Any) -> list[Any]:
    """The index itself, downcast, and the one it wraps behind a pre-transform (OPQ, PCA), downcast."""
    outer = faiss.downcast_index(index)
    parts = [outer]
    if isinstance(outer, faiss.IndexPreTransform):
        parts.append(faiss.downcast_index(outer.index))
    ivf = faiss.try_extract_index_ivf(parts[-1])
    return parts + ([faiss.downcast_index(ivf)] if ivf is not None else [])


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
