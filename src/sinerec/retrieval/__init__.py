"""Nearest-neighbour item indexes behind one ``(ids, scores)`` search contract.

- :mod:`sinerec.retrieval.base`: the contract (:class:`ItemIndex`), the multi-vector merge, recall.
- :mod:`sinerec.retrieval.registry`: the backend table, :class:`IndexSettings`, build / save / load.
- :mod:`sinerec.retrieval.torch_index`: ``torch`` (alias ``exact``, the default): the evaluator's ranking.
- :mod:`sinerec.retrieval.faiss_index`: ``flat``, ``ivf``, ``hnsw``: Faiss, the declared alternatives.
- :mod:`sinerec.retrieval.faiss_factory`: ``factory``: any Faiss index-factory string (IVF-PQ, OPQ, ...).
"""

from sinerec.retrieval.base import ItemIndex, items_fingerprint, merge_multi, recall_at_k, vectors_fingerprint
from sinerec.retrieval.faiss_index import faiss_available
from sinerec.retrieval.registry import (
    ALIASES,
    BACKENDS,
    BackendSpec,
    IndexOption,
    IndexSettings,
    backend_names,
    build_index,
    index_options,
    load_index,
    register_backend,
)

__all__ = ["ALIASES", "BACKENDS", "BackendSpec", "IndexOption", "IndexSettings", "ItemIndex", "backend_names",
           "build_index", "faiss_available", "index_options", "items_fingerprint", "load_index", "merge_multi",
           "recall_at_k", "register_backend", "vectors_fingerprint"]
