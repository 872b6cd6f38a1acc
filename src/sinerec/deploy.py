"""Serving behind a process manager: the service's settings, read from the environment by the app factory.

``uvicorn --factory sinerec.serve:create_app_from_env --workers N`` (or gunicorn with uvicorn workers) imports
the app in each worker process and calls the factory there, so a worker's settings cannot be arguments: they
are environment variables, one per setting (:func:`settings_from_env`):

==============================  ==========================================================================
``SINEREC_RUN``                 the run directory (required)
``SINEREC_INDEX``               a saved index folder (``sinerec index build``); a torch or flat index is
                                memory-mapped, so every worker shares one copy of its vectors
``SINEREC_BACKEND``, ...        without ``SINEREC_INDEX``, the index built in each worker: ``SINEREC_`` and
                                an :class:`~sinerec.retrieval.IndexSettings` field (``SINEREC_NLIST``)
``SINEREC_NPROBE``,             search settings (also override a saved index's)
``SINEREC_EF_SEARCH``
``SINEREC_THREADS``             torch and Faiss threads per request (default 1)
``SINEREC_METRICS``             ``/metrics`` on (default ``1``) or off (``0``)
``SINEREC_ACCESS_LOG``          one line per request on the ``sinerec.access`` logger (default ``0``)
``SINEREC_MAX_K``, ...          every keyword of :func:`sinerec.serve.create_app`, upper-cased:
                                ``SINEREC_MAX_BODY_BYTES``, ``SINEREC_MAX_HISTORY``, ``SINEREC_MAX_BATCH``,
                                ``SINEREC_MAX_CONCURRENCY``...; a value is read as JSON (``100``, ``true``,
                                ``["a", "b"]``), else as a string
==============================  ==========================================================================

``sinerec serve --workers N`` writes its flags into these variables (:func:`settings_to_env`) and starts
uvicorn with the factory's import string, so one process and N workers are configured the same way.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sinerec.errors import SinerecError
from sinerec.retrieval import IndexSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sinerec.retrieval import ItemIndex
    from sinerec.runs import LoadedRun

__all__ = ["PREFIX", "ServiceSettings", "app_options", "build_service", "check_service", "load_service",
           "settings_from_env", "settings_to_env"]

PREFIX = "SINEREC_"
SEARCH_TIME = ("nprobe", "ef_search")  # IndexSettings fields that also override a saved index's


@dataclass(frozen=True)
class ServiceSettings:
    """Everything one server process needs: what to load and how to serve it.

    Attributes:
        run: the run directory.
        index: a saved index folder, or None to build one from ``index_settings``.
        index_settings: how to build the index when ``index`` is None.
        nprobe, ef_search: search settings overriding the index's (None: keep them).
        threads: torch and Faiss intra-op threads per request.
        metrics: serve ``/metrics``.
        access_log: log each request on ``sinerec.access``.
        app_options: keywords of :func:`sinerec.serve.create_app` (limits).
    """

    run: Path
    index: Path | None = None
    index_settings: IndexSettings = field(default_factory=IndexSettings)
    nprobe: int | None = None
    ef_search: int | None = None
    threads: int = 1
    metrics: bool = True
    access_log: bool = False
    app_options: dict[str, Any] = field(default_factory=dict)


def app_options() -> dict[str, Any]:
    """The keywords of :func:`sinerec.serve.create_app` after the run and the index, with their defaults."""
    from sinerec.serve import create_app

    params = list(inspect.signature(create_app).parameters.values())[2:]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


# ---------------------------------------------------------------------------------------------------------
# Environment <-> settings
# ---------------------------------------------------------------------------------------------------------


def _integer_options() -> set[str]:
    """Settings whose values are integers: the int IndexSettings fields, the threads and every
    ``create_app`` keyword annotated ``int`` or ``int | None`` (read from the signature, so that a new
    limit is checked without being listed here)."""
    from sinerec.serve import create_app

    params = inspect.signature(create_app).parameters.values()
    annotated = {p.name for p in params
                 if p.annotation is int or "int" in str(p.annotation).replace(" ", "").split("|")}
    return annotated | {f.name for f in fields(IndexSettings) if isinstance(f.default, int)} | {"threads"}


def _value(name: str, text: str, default: Any, integers: set[str]) -> Any:
    """The variable's value: 1/0 for a bool default, an integer for ``integers``, else JSON or the text."""
    key = PREFIX + name.upper()
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SinerecError(f"{key}: expected 1/0 (true/false), got {text!r}")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if value is None and default is None:  # ``null``: the option's "not set", as serve() writes it
        return None
    if name in integers and (isinstance(value, bool) or not isinstance(value, int)):
        raise SinerecError(f"{key}: expected an integer, got {text!r}")
    return value


def settings_from_env(environ: Mapping[str, str]) -> ServiceSettings:
    """Read a :class:`ServiceSettings` from ``SINEREC_*`` variables (table above); unset ones keep defaults.

    Raises SinerecError naming the variable and its value when one is missing or malformed.
    """
    integers = _integer_options()

    def get(name: str, default: Any) -> Any:
        text = environ.get(PREFIX + name.upper())
        return default if text is None or text == "" else _value(name, text, default, integers)

    run = environ.get(PREFIX + "RUN")
    if not run:
        raise SinerecError(f"{PREFIX}RUN: not set; it names the run directory to serve (`sinerec train --out`)")
    # The search-time fields are the overrides below (applied to a built index too), as on the command line.
    build = {f.name: get(f.name, f.default) for f in fields(IndexSettings) if f.name not in SEARCH_TIME}
    index = environ.get(PREFIX + "INDEX")
    return ServiceSettings(
        run=Path(run), index=Path(index) if index else None, index_settings=IndexSettings(**build),
        nprobe=get("nprobe", None), ef_search=get("ef_search", None), threads=get("threads", 1),
        metrics=get("metrics", True), access_log=get("access_log", False),
        app_options={name: get(name, default) for name, default in app_options().items()})


def settings_to_env(settings: ServiceSettings) -> dict[str, str]:
    """The ``SINEREC_*`` variables that :func:`settings_from_env` reads back as ``settings``."""
    env = {PREFIX + "RUN": str(settings.run), PREFIX + "THREADS": str(settings.threads),
           PREFIX + "METRICS": "1" if settings.metrics else "0",
           PREFIX + "ACCESS_LOG": "1" if settings.access_log else "0"}
    if settings.index is not None:
        env[PREFIX + "INDEX"] = str(settings.index)
    for f in fields(IndexSettings):
        if f.name not in SEARCH_TIME:  # those travel as the overrides below, as on the command line
            env[PREFIX + f.name.upper()] = str(getattr(settings.index_settings, f.name))
    for name in SEARCH_TIME:
        value = getattr(settings, name)
        if value is not None:
            env[PREFIX + name.upper()] = str(value)
    for name, value in settings.app_options.items():
        env[PREFIX + name.upper()] = json.dumps(value)
    return env


# ---------------------------------------------------------------------------------------------------------
# Loading and building the service
# ---------------------------------------------------------------------------------------------------------


def check_service(settings: ServiceSettings) -> None:
    """Cheap checks before workers start (each worker would otherwise fail alone): the run has its config and
    weights, the index folder its header. Raises SinerecError naming the path."""
    from sinerec.runs import CONFIG, MODEL

    for path, what in ((settings.run / CONFIG, "a sinerec run directory"), (settings.run / MODEL, "a trained run")):
        if not path.is_file():
            raise SinerecError(f"{settings.run}: not {what} ({path.name} is missing)")
    if settings.index is not None and not (settings.index / "index.json").is_file():
        raise SinerecError(f"{settings.index}: not an index folder (index.json is missing)")


def load_service(settings: ServiceSettings) -> tuple[LoadedRun, ItemIndex]:
    """Set the thread counts, load the run and its index (the saved one, checked against the model's
    vectors, or one built from ``settings.index_settings``)."""
    import torch

    from sinerec.retrieval import build_index, faiss_available, load_index, vectors_fingerprint
    from sinerec.runs import load_run

    torch.set_num_threads(max(1, settings.threads))
    if faiss_available():
        import faiss

        faiss.omp_set_num_threads(max(1, settings.threads))
    run = load_run(settings.run)
    vectors = run.model.item_embeddings().detach().float()
    if settings.index is not None:
        index = load_index(settings.index, expected_fingerprint=vectors_fingerprint(vectors),
                           nprobe=settings.nprobe, ef_search=settings.ef_search)
    else:
        index = build_index(vectors, settings.index_settings).with_search_settings(settings.nprobe,
                                                                                   settings.ef_search)
    # One search before the first request: the index's pages are read now (a memory-mapped index is then in
    # the shared page cache, whichever worker gets traffic first) and /health answers only when warm.
    index.search(np.zeros((1, index.dim), np.float32), 1)
    return run, index


def build_service(settings: ServiceSettings) -> FastAPI:
    """The instrumented app of one server process: :func:`load_service`, ``create_app`` with the limits of
    ``settings.app_options``, then ``/metrics`` and the access log (:func:`sinerec.telemetry.instrument`)."""
    from sinerec.serve import create_app
    from sinerec.telemetry import access_log, instrument

    run, index = load_service(settings)
    if settings.access_log and not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(message)s"))
        access_log.addHandler(handler)
        access_log.propagate = False  # one line per request, whatever the root logger does
    app = create_app(run, index, **settings.app_options)
    app.state.run = run
    return instrument(app, metrics=settings.metrics, log_requests=settings.access_log)
