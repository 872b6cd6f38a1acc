"""The index backends as a table, and building, saving and loading indexes through it.

:data:`BACKENDS` maps a name to a :class:`BackendSpec`: how to build and load it, the
:class:`IndexSettings` it reads, whether it needs Faiss, whether it is exact, and the settings under which
an approximate backend is exact (the shared test suite runs every entry with those). The CLI's
``--backend`` choices and help, its index flags and their defaults, and the dispatch of
:func:`build_index` / :func:`load_index` all come from here: a new backend is one class plus one entry
(:func:`register_backend`).

``exact`` (the default) is an alias of ``torch``: the offline evaluator's own ranking
(:mod:`sinerec.retrieval.torch_index`). The Faiss backends are the declared alternatives: ``flat`` exact,
``ivf`` and ``hnsw`` approximate (:mod:`sinerec.retrieval.faiss_index`); ``factory`` any Faiss index-factory
string (:mod:`sinerec.retrieval.faiss_factory`), approximate unless the string is exact.

Saved indexes are folders, written to a temporary folder and renamed into place (a failed save leaves the
old index as it was):

    INDEX/index.json    header: format, backend, settings, dim, num_items, fingerprint of the indexed
                        vectors (recomputed from the payload on load: an edited header is refused)
    INDEX/...           the backend's payload (index.faiss, or vectors.npy for torch; factory adds
                        payload.json, its fingerprint bound to index.faiss, since quantised codes are not the vectors)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sinerec.errors import ConfigError, SinerecError
from sinerec.retrieval.base import FORMAT, ItemIndex, as_float32, vectors_fingerprint
from sinerec.retrieval.faiss_factory import build_factory, load_factory
from sinerec.retrieval.faiss_index import build_flat, build_hnsw, build_ivf, load_faiss
from sinerec.retrieval.torch_index import TorchIndex

__all__ = ["ALIASES", "BACKENDS", "BackendSpec", "IndexOption", "IndexSettings", "backend_names", "build_index",
           "index_options", "load_index", "register_backend"]


def _option(default: int | str, help: str, search_time: bool = False, cli: bool = True) -> Any:
    """A setting's default and its CLI flag: ``search_time`` ones can be changed on a loaded index."""
    return field(default=default, metadata={"help": help, "search_time": search_time, "cli": cli})


@dataclass(frozen=True)
class IndexSettings:
    """How to build (and search) an index. Search-time fields (``nprobe``, ``ef_search``) can be changed on
    a loaded index with :meth:`ItemIndex.with_search_settings`. Which backend reads which field is its
    :attr:`BackendSpec.settings`."""

    backend: str = "exact"  # a name of backend_names()
    factory: str = _option("Flat", "a Faiss index-factory string, e.g. 'OPQ16,IVF4096,PQ16'")
    nlist: int = _option(1024, "k-means cells")  # ivf: clipped to M
    nprobe: int = _option(32, "cells visited per query", search_time=True)
    hnsw_m: int = _option(32, "links per node")
    ef_construction: int = _option(200, "build candidate list")
    ef_search: int = _option(128, "search candidate list", search_time=True)  # raised to the fetch size
    train_size: int = _option(262_144, "vectors sampled for k-means training", cli=False)
    seed: int = _option(0, "which vectors are sampled for training", cli=False)

    def __post_init__(self) -> None:
        if self.backend not in backend_names():
            raise ConfigError(f"index.backend: expected one of {', '.join(backend_names())}, got {self.backend!r}")
        for key in ("nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search", "train_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"index.{key}: must be an integer >= 1, got {value!r}")
        if not isinstance(self.factory, str) or not self.factory.strip():
            raise ConfigError(f"index.factory: must be a Faiss index-factory string, got {self.factory!r}")

    def describe(self) -> dict[str, Any]:
        """The settings that matter for this backend (for headers, logs and benchmark tables)."""
        keys = BACKENDS[self.backend].settings if self.backend in BACKENDS else ()
        return {"backend": self.backend, **{key: getattr(self, key) for key in keys}}


Builder = Callable[[np.ndarray, IndexSettings, str], ItemIndex]  # (M + 1, D) float32, settings, fingerprint
Loader = Callable[[Path, IndexSettings, str], ItemIndex]  # folder, settings, fingerprint


@dataclass(frozen=True)
class BackendSpec:
    """One index backend.

    Attributes:
        name: the ``--backend`` value and ``IndexSettings.backend``.
        summary: a few words for the CLI help.
        build, load: build from item vectors; load a saved folder's payload (the header is read for it).
        exact: whether every search returns the exact ranking.
        needs_faiss: whether it needs the optional Faiss package.
        settings: the IndexSettings fields it reads (headers, ``describe``, the CLI help).
        exact_settings: setting overrides under which an approximate backend is exact on a small
            catalogue (M < 100), each checked by the shared test suite; ``({},)`` for exact backends.
    """

    name: str
    summary: str
    build: Builder
    load: Loader
    exact: bool
    needs_faiss: bool = False
    settings: tuple[str, ...] = ()
    exact_settings: tuple[Mapping[str, int | str], ...] = ({},)


BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("torch", "the offline evaluator's exact ranking", TorchIndex.build, TorchIndex.load, exact=True),
    BackendSpec("flat", "Faiss, exact", build_flat, load_faiss, exact=True, needs_faiss=True),
    BackendSpec("ivf", "Faiss, approximate", build_ivf, load_faiss, exact=False, needs_faiss=True,
                settings=("nlist", "nprobe", "train_size", "seed"),
                exact_settings=({"nlist": 1, "nprobe": 1}, {"nlist": 5, "nprobe": 5})),
    BackendSpec("hnsw", "Faiss, approximate", build_hnsw, load_faiss, exact=False, needs_faiss=True,
                settings=("hnsw_m", "ef_construction", "ef_search"),
                exact_settings=({"hnsw_m": 8, "ef_construction": 64, "ef_search": 256},)),
    BackendSpec("factory", "Faiss index-factory string (--factory), approximate unless exact", build_factory,
                load_factory, exact=False, needs_faiss=True,
                settings=("factory", "nprobe", "ef_search", "train_size", "seed"),
                exact_settings=({"factory": "Flat"}, {"factory": "IVF4,Flat", "nprobe": 4},
                                {"factory": "HNSW8", "ef_search": 256})),
)}

ALIASES = {"exact": "torch"}  # resolved when an index is built: its header names the backend itself


def backend_names() -> tuple[str, ...]:
    """Every accepted ``backend`` value: the aliases, then the table in order."""
    return (*ALIASES, *BACKENDS)


def register_backend(spec: BackendSpec) -> None:
    """Add a backend to the table (the CLI, build, load and the shared tests pick it up)."""
    if spec.name in BACKENDS or spec.name in ALIASES:
        raise ValueError(f"index backend {spec.name!r} is already registered")
    unknown = set(spec.settings) - {f.name for f in fields(IndexSettings)}
    if unknown:
        raise ValueError(f"index backend {spec.name!r}: unknown settings {sorted(unknown)}")
    BACKENDS[spec.name] = spec


@dataclass(frozen=True)
class IndexOption:
    """An IndexSettings field offered as a command-line flag."""

    name: str  # the field; the flag is --name with dashes
    default: int | str
    help: str  # "<backends>: <what> (default <default>)"
    search_time: bool  # left unset on the command line, so that a loaded index keeps its saved value


def index_options() -> list[IndexOption]:
    """The command-line index settings, in field order, each naming the backends that read it."""
    options = []
    for f in fields(IndexSettings):
        if not f.metadata.get("cli"):
            continue
        default = f.default
        assert isinstance(default, (int, str))
        users = [name for name, spec in BACKENDS.items() if f.name in spec.settings]
        options.append(IndexOption(f.name, default, f"{', '.join(users)}: {f.metadata['help']} (default {default})",
                                   f.metadata["search_time"]))
    return options


def build_index(item_vectors: np.ndarray | torch.Tensor, settings: IndexSettings | None = None) -> ItemIndex:
    """Build an index over rows 1..M of ``item_vectors`` (M + 1, D); row 0 (padding) is left out."""
    settings = settings or IndexSettings()
    vectors = as_float32(item_vectors)
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise SinerecError(f"build_index: item vectors must be (M + 1, D) with M >= 1, got {vectors.shape}")
    if settings.backend in ALIASES:
        settings = replace(settings, backend=ALIASES[settings.backend])
    return BACKENDS[settings.backend].build(vectors, settings, vectors_fingerprint(vectors))


def load_index(path: str | Path, expected_fingerprint: str | None = None, nprobe: int | None = None,
               ef_search: int | None = None) -> ItemIndex:
    """Load an index folder written by :meth:`ItemIndex.save`.

    The fingerprint is recomputed from the stored vectors (:meth:`ItemIndex.stored_items`) and must equal
    the one in index.json, so that an edited header cannot pass another run's vectors off as this model's.
    ``expected_fingerprint`` (``vectors_fingerprint`` of the model's item vectors) refuses an index built
    from other vectors; ``nprobe`` / ``ef_search`` override the saved search settings. Every failure is a
    SinerecError naming the folder.
    """
    path = Path(path)
    header = _read_header(path)
    settings = IndexSettings(**header["settings"])
    claimed, num_items, dim = header["fingerprint"], header["num_items"], header["dim"]
    if settings.backend not in BACKENDS:
        raise SinerecError(f"{path}: index backend {settings.backend!r} is not a built index's backend")
    try:
        index = BACKENDS[settings.backend].load(path, settings, claimed)
        if index.num_items != num_items or index.dim != dim:
            raise SinerecError(f"{path}: index.json says M={num_items}, D={dim} but the stored index differs")
        actual = index.payload_fingerprint()
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise SinerecError(f"{path}: the stored index cannot be read ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc
    if actual != claimed:
        raise SinerecError(f"{path}: index.json claims fingerprint {claimed} but the stored vectors have "
                           f"{actual}: the folder was edited or mixed; rebuild it with `sinerec index build`")
    if expected_fingerprint is not None and actual != expected_fingerprint:
        raise SinerecError(f"{path}: the index was built from other item vectors (fingerprint {actual}, "
                           f"the model's is {expected_fingerprint}); rebuild it with `sinerec index build`")
    return index.with_search_settings(nprobe=nprobe, ef_search=ef_search)


def _read_header(path: Path) -> dict[str, Any]:
    """index.json, checked for the format and the keys load_index reads."""
    if not (path / "index.json").is_file():
        raise SinerecError(f"{path}: not an index folder (index.json is missing)")
    try:
        header = json.loads((path / "index.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SinerecError(f"{path / 'index.json'}: not readable JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise SinerecError(f"{path}: unknown index format {found!r} (expected {FORMAT!r}); rebuild it with "
                           "`sinerec index build`")
    kinds = {"settings": dict, "fingerprint": str, "num_items": int, "dim": int}
    for key, kind in kinds.items():
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise SinerecError(f"{path / 'index.json'}: {key!r} should be a {kind.__name__}, got "
                               f"{header.get(key)!r:.60}")
    unknown = set(header["settings"]) - {f.name for f in fields(IndexSettings)}
    if unknown:
        raise SinerecError(f"{path / 'index.json'}: unknown settings {sorted(unknown)}")
    return header
