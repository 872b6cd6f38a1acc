"""HTTP API over :class:`sinerec.recommend.Recommender`: the same code path as ``sinerec recommend``.

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

- ``POST /recommend``: ``{"history": [ids...], "k": 10, "exclude": [ids...], "exclude_seen": true}`` ->
  items (id, score, title, categories, the interest that scores it highest and its concept) and, for SINE,
  the explanation (activated concepts, gates, aggregation weights, P(k|t) and P(t|k) per history item).
- ``POST /recommend/batch``: ``{"requests": [...]}`` -> ``{"results": [...]}``, one model call and one index
  search for the whole batch.
- ``GET /items/{id}/similar?k=10``: nearest items by inner product of item vectors.
- ``GET /health``: model, catalogue size, index settings.
- the explorer's page and ``/api/...`` routes (:mod:`sinerec.explorer`) unless ``explorer=False``; its user
  routes hand out training users' whole histories and are there only with ``expose_users=True``.

The run and the index are loaded once, before the app is created; requests only compute. Errors are JSON
``{"detail": "<what is wrong, naming the field>"}``: 400 for a malformed or missing JSON body and for a Host
header not in ``allowed_hosts``, 404 for an unknown item in a path, 413 for a body over ``max_body_bytes``
(checked on Content-Length and while reading), 422 for invalid fields (unknown ids, empty or over-long
history, k out of range, wrong types, a batch over its limits).

Limits per call, each stated in the OpenAPI schema: a history holds 1..``max_history`` ids; k is in
1..``max_k`` (a k above the catalogue size returns the whole catalogue); a batch holds 1..``max_batch``
requests whose k sum to at most ``max_batch_k`` (the default 6,400 is the cost of 64 requests with k = 100:
the work and the response of a batch grow with the sum of k, so that bound, not the batch size alone, keeps
one small request from costing seconds of CPU and megabytes of output). An id is an integer or a string;
an integer table accepts integer text of ASCII digits (:func:`sinerec.ids.integer_id`), anything else is an
unknown id. Connection limits (read timeout, keep-alive, connection cap) are :mod:`sinerec.serve_server`'s.

Concurrency: endpoints are synchronous and run in the server's thread pool; at most ``max_concurrency``
requests compute at once (the rest wait), so a burst queues instead of oversubscribing the cores.
"""

# No ``from __future__ import annotations``: the request models are built per app (their bounds are the app's
# limits) and FastAPI resolves a route's annotations from the module's globals, which cannot see them.
from sinerec import runtime

runtime.prefer_passive_wait()  # `uvicorn --factory sinerec.serve:create_app_from_env` imports torch below

import logging  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Annotated, Any  # noqa: E402

from fastapi import FastAPI, Query, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from sinerec.errors import ConfigError, SinerecError  # noqa: E402
from sinerec.ids import plain_id, show_id  # noqa: E402
from sinerec.recommend import (  # noqa: E402
    Recommendation,
    RecommendedItem,
    Recommender,
    RecommendRequest,
    RequestError,
    UnknownItemError,
)
from sinerec.retrieval import IndexSettings, ItemIndex  # noqa: E402
from sinerec.serve_guard import BodyLimit, TrustedHosts, is_loopback, trusted_hosts  # noqa: E402

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["ApiLimits", "create_app", "create_app_from_env", "request_models", "serve"]

log = logging.getLogger("sinerec.serve")

ItemId = Annotated[StrictInt | StrictStr, Field(description="an original item id, as in the dataset")]


# ---------------------------------------------------------------------------------------------------------
# Request bodies: built per app, so that the schema states the bounds the app enforces
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiLimits:
    """What one call may ask for (see the module docstring); every value must be an integer >= 1."""

    max_body_bytes: int = 1 << 20
    max_history: int = 1000
    max_k: int = 1000
    max_batch: int = 256
    max_batch_k: int = 6400  # 64 requests x k = 100

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serve.{name}: must be an integer >= 1, got {value!r}")


def request_models(limits: ApiLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The (single, batch) request bodies whose JSON schema carries ``limits`` (minItems, maxItems, minimum,
    maximum), enforced by validation."""

    class RecommendBody(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={
            "examples": [{"history": [1, 2, 3], "k": 10, "exclude": [], "exclude_seen": True}]})

        history: list[ItemId] = Field(min_length=1, max_length=limits.max_history,
                                      description="original item ids, oldest first; the model sees the last "
                                                  "max_len")
        k: StrictInt = Field(10, ge=1, le=limits.max_k, description="number of items to return")
        exclude: list[ItemId] = Field(default_factory=list, description="items never to return")
        exclude_seen: StrictBool = Field(True, description="remove the history's items from the ranking")

    class BatchBody(BaseModel):
        model_config = ConfigDict(extra="forbid")

        requests: list[RecommendBody] = Field(  # type: ignore[valid-type]
            min_length=1, max_length=limits.max_batch,
            description=f"the requests; their k sum to at most {limits.max_batch_k}")

    return RecommendBody, BatchBody


# ---------------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------------


class ItemOut(BaseModel):
    item_id: StrictInt | StrictStr
    score: float
    title: str | None = None
    categories: list[str] = []
    interest: int | None = Field(None, description="the interest (0..K-1) whose vector scores the item highest")
    concept: int | None = Field(None, description="that interest's activated concept (SINE)")


class HistoryStepOut(BaseModel):
    item_id: StrictInt | StrictStr
    intention: list[float] = Field(description="P(k|t): which interest this item expresses (K values)")
    attention: list[float] = Field(description="P(t|k): this item's weight in each interest (K values)")


class ExplanationOut(BaseModel):
    concept_ids: list[int] = Field(description="activated concepts, best first; interest k is built on the k-th")
    gates: list[float]
    aggregation: list[float] = Field(description="e: the weight of each interest in the user vector")
    history: list[HistoryStepOut]


class RecommendResponse(BaseModel):
    items: list[ItemOut]
    explanation: ExplanationOut | None = None
    history_used: int
    excluded: int


class BatchResponse(BaseModel):
    results: list[RecommendResponse]


class SimilarResponse(BaseModel):
    item_id: StrictInt | StrictStr
    items: list[ItemOut]


class HealthResponse(BaseModel):
    status: str
    model: str
    dataset: str
    num_items: int
    dim: int
    max_len: int
    index: dict[str, Any]
    fingerprint: str


class ErrorResponse(BaseModel):
    detail: str


def _item_out(item: RecommendedItem) -> dict[str, Any]:
    return {"item_id": item.item_id, "score": item.score, "title": item.title,
            "categories": list(item.categories), "interest": item.interest, "concept": item.concept}


def _recommendation_out(rec: Recommendation) -> dict[str, Any]:
    explanation = None
    if rec.explanation is not None:
        e = rec.explanation
        explanation = {"concept_ids": list(e.concept_ids), "gates": list(e.gates),
                       "aggregation": list(e.aggregation),
                       "history": [{"item_id": s.item_id, "intention": list(s.intention),
                                    "attention": list(s.attention)} for s in e.history]}
    return {"items": [_item_out(i) for i in rec.items], "explanation": explanation,
            "history_used": rec.history_used, "excluded": rec.excluded}


# ---------------------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------------------


def _field_message(err: dict[str, Any], limits: ApiLimits) -> str:
    """One validation error in our words, with the bound and the value where there is one."""
    kind, ctx, loc = err.get("type"), err.get("ctx") or {}, err.get("loc", ())
    if loc[-1:] in (("int",), ("str",)):  # a union (int | str item ids) reports one error per member
        return "should be an item id (an integer or a string)"
    if kind in ("greater_than_equal", "less_than_equal") and loc[-1:] == ("k",):
        value = err.get("input")  # a query parameter arrives as text
        return f"must be between 1 and {limits.max_k}, got {value if isinstance(value, int) else show_id(value)}"
    noun = "requests" if loc[-1:] == ("requests",) else "items"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return f"is empty; give at least one of the {noun}"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} {noun} are accepted, got {ctx.get('actual_length')}"
    return str(err.get("msg", "invalid"))


def _validation_message(exc: RequestValidationError, limits: ApiLimits) -> tuple[int, str]:
    """400 and the parser's message for a malformed or missing JSON body; else 422 naming each bad field."""
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", err.get("msg", "invalid JSON"))
            return 400, f"malformed JSON body: {reason}"
        if err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",):
            return 400, "body: missing; send a JSON object"
    messages: dict[str, list[str]] = {}
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "int", "str")]
        where = messages.setdefault(".".join(loc) or "body", [])
        msg = _field_message(err, limits)
        if msg not in where:
            where.append(msg)
    parts = [f"{where}: {' or '.join(msgs)}" for where, msgs in list(messages.items())[:10]]
    more = f" (and {len(messages) - 10} more fields)" if len(messages) > 10 else ""
    return 422, "; ".join(parts) + more


# ---------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------


def create_app(run: "LoadedRun", index: ItemIndex | None = None, max_body_bytes: int = 1 << 20,
               max_history: int = 1000, max_k: int = 1000, max_batch: int = 256, max_batch_k: int = 6400,
               max_concurrency: int | None = None, allowed_hosts: list[str] | None = None, explorer: bool = True,
               expose_users: bool = True) -> FastAPI:
    """The FastAPI app for a loaded run (``sinerec.runs.LoadedRun``) and an index over its item vectors
    (default: exact). Everything is in memory when this returns; no request reads a file.

    ``allowed_hosts``: the Host names answered (:func:`sinerec.serve_guard.trusted_hosts`; None: any, for
    in-process use). ``explorer``: mount the explorer page and routes; ``expose_users``: with them, the
    routes that return training users' histories. The limits are those of :class:`ApiLimits`.
    """
    limits = ApiLimits(max_body_bytes, max_history, max_k, max_batch, max_batch_k)
    if max_concurrency is not None and (isinstance(max_concurrency, bool) or max_concurrency < 1):
        raise ConfigError(f"serve.max_concurrency: must be an integer >= 1, got {max_concurrency!r}")
    RecommendBody, BatchBody = request_models(limits)
    recommender = Recommender(run, index, max_history=max_history)
    slots = threading.BoundedSemaphore(max_concurrency or os.cpu_count() or 1)
    app = FastAPI(title="sinerec", version=_version(),
                  description=f"Recommendations from a trained {run.config.model} run on {run.data.name} "
                              f"({recommender.num_items:,} items); errors are JSON {{\"detail\": ...}}.")
    app.state.recommender = recommender
    errors: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (400, 413, 422)}

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail = _validation_message(exc, limits)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):  # json.loads refused the body
            detail = f"malformed JSON body: {str(exc.__cause__)[:200]}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownItemError) and exc.where == "item" else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def to_request(body: Any) -> RecommendRequest:
        return RecommendRequest(body.history, body.k, body.exclude, body.exclude_seen)

    @app.post("/recommend", response_model=RecommendResponse, responses=errors,
              summary="Top k items for a history, with the explanation")
    def recommend(body: RecommendBody) -> dict[str, Any]:  # type: ignore[valid-type]
        with slots:
            rec = recommender.recommend_batch([to_request(body)], prefix=False)[0]
        return _recommendation_out(rec)

    @app.post("/recommend/batch", response_model=BatchResponse, responses=errors,
              summary=f"Several histories in one call (one model call, one index search); at most "
                      f"{max_batch} requests whose k sum to at most {max_batch_k}")
    def recommend_batch(body: BatchBody) -> dict[str, Any]:  # type: ignore[valid-type]
        requests = body.requests  # type: ignore[attr-defined]
        total_k = sum(r.k for r in requests)
        if total_k > max_batch_k:
            raise RequestError(f"requests: the k of a batch sum to at most {max_batch_k} (--max-batch-k), "
                               f"got {total_k}")
        with slots:
            recs = recommender.recommend_batch([to_request(r) for r in requests])
        return {"results": [_recommendation_out(r) for r in recs]}

    @app.get("/items/{item_id}/similar", response_model=SimilarResponse,
             responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
             summary="Items nearest to an item by inner product of item vectors")
    def similar(item_id: str, k: Annotated[int, Query(ge=1, le=max_k)] = 10) -> dict[str, Any]:
        idx = int(recommender.item_indices([item_id], "item")[0])  # 404 before any work
        with slots:
            items = recommender.similar(item_id, k)
        return {"item_id": plain_id(run.data.item_ids[idx]), "items": [_item_out(i) for i in items]}

    @app.get("/health", response_model=HealthResponse, summary="Liveness and what is loaded")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": run.config.model, "dataset": run.data.name,
                "num_items": recommender.num_items, "dim": int(recommender.item_vectors.shape[1]),
                "max_len": recommender.max_len, "index": recommender.index.settings.describe(),
                "fingerprint": recommender.fingerprint}

    if explorer:
        try:
            from sinerec.explorer import mount_explorer  # the concept explorer page, when installed
        except ImportError:
            pass
        else:
            mount_explorer(app, run, expose_users=expose_users)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHosts, allowed=allowed_hosts)  # added last: runs first
    return app


def _version() -> str:
    from sinerec import __version__

    return __version__


def create_app_from_env() -> FastAPI:
    """The app factory of ``uvicorn --factory sinerec.serve:create_app_from_env`` (and gunicorn's uvicorn
    workers): each worker loads the run and index named by ``SINEREC_*`` environment variables
    (:mod:`sinerec.deploy`) and serves them with ``/metrics`` and the optional access log."""
    import dataclasses

    from sinerec.deploy import PREFIX, build_service, settings_from_env

    settings = settings_from_env(os.environ)
    options = dict(settings.app_options)
    if PREFIX + "ALLOWED_HOSTS" not in os.environ:  # a factory does not know its bind address: loopback only
        options["allowed_hosts"] = trusted_hosts("127.0.0.1")
    if PREFIX + "EXPOSE_USERS" not in os.environ:  # training users' histories only when asked for
        options["expose_users"] = False
    return build_service(dataclasses.replace(settings, app_options=options))


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, index_path: str | Path | None = None,
          settings: IndexSettings | None = None, nprobe: int | None = None, ef_search: int | None = None,
          threads: int = 1, log_level: str = "warning", allowed_hosts: list[str] | None = None,
          expose_users: bool | None = None, read_timeout: float = 10.0, keep_alive: int = 5,
          max_connections: int = 256, workers: int = 1, metrics: bool = True, access_log: bool = False,
          **app_options: Any) -> None:
    """Load the run and the index (``index_path``, or built from ``settings``), then serve until stopped.

    ``threads`` is the intra-op thread count of torch and Faiss per request: requests already run in
    parallel, and a single history's model call is too small to gain from more threads. Requests must carry
    a Host of :func:`sinerec.serve_guard.trusted_hosts` (``host`` and ``allowed_hosts``); ``expose_users``
    (default: only when ``host`` is a loopback address) turns on the explorer's user routes. The connection
    limits are :class:`sinerec.serve_server.ServerLimits`'. ``workers`` > 1 starts that many processes
    through the app factory (:func:`create_app_from_env`), each loading the run (a saved torch or flat
    ``index_path`` is memory-mapped and shared); their ``/metrics`` is summed over the workers
    (prometheus_client's multiprocess mode, in a temporary folder unless ``PROMETHEUS_MULTIPROC_DIR`` is
    set). ``app_options`` are :func:`create_app`'s limits.
    """
    import tempfile

    from sinerec.deploy import ServiceSettings, build_service, check_service, settings_from_env, settings_to_env
    from sinerec.serve_server import ServerLimits, run_server, run_workers, server_config

    limits = ServerLimits(read_timeout, keep_alive, max_connections)  # checked before the run is loaded
    if workers < 1:
        raise SinerecError(f"workers: must be >= 1, got {workers}")
    users = is_loopback(host) if expose_users is None else expose_users
    options = {**app_options, "allowed_hosts": trusted_hosts(host, allowed_hosts or ()), "expose_users": users}
    service = ServiceSettings(Path(run_dir), Path(index_path) if index_path is not None else None,
                              settings or IndexSettings(), nprobe, ef_search, threads, metrics, access_log, options)
    where = (f"http://{host}:{port} (API docs: /docs{'; metrics: /metrics' if metrics else ''}; user histories "
             f"{'served' if users else 'not served'})")
    if workers == 1:
        app = build_service(service)
        run, index = app.state.run, app.state.recommender.index
        banner = (f"sinerec: serving {run.config.model} ({run.data.name}, {len(run.data.item_ids) - 1:,} items, "
                  f"index {index.settings.describe()}) on {where}")
        run_server(server_config(app, host, port, limits, log_level=log_level, access_log=False), banner)
        return
    check_service(service)
    env = settings_to_env(service)
    settings_from_env(env)  # what the workers will read, checked once here
    os.environ.update(env)  # the workers are started with this environment
    if metrics and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sinerec-metrics-")
    config = server_config("sinerec.serve:create_app_from_env", host, port, limits, factory=True, workers=workers,
                           log_level=log_level, access_log=False)
    run_workers(config, f"sinerec: serving {run_dir} with {workers} workers on {where}")
