"""HTTP API over :class:`sinerec.recommend.Recommender`: the same code path as ``sinerec recommend``.

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

- ``POST /recommend``: ``{"history": [ids...], "k": 10, "exclude": [ids...], "exclude_seen": true}`` ->
  items (id, score, title, categories, the interest that scores it highest and its concept) and, for SINE,
  the explanation (activated concepts, gates, aggregation weights, P(k|t) and P(t|k) per history item).
- ``POST /recommend/batch``: ``{"requests": [...]}`` -> ``{"results": [...]}``, one model call and one index
  search for the whole batch.
- ``GET /items/{id}/similar?k=10``: nearest items by inner product of item vectors.
- ``GET /health``: model, catalogue size, index settings.

The run and the index are loaded once, before the app is created; requests only compute. Errors are JSON
``{"detail": "<what is wrong, naming the field>"}``: 400 for malformed JSON, 404 for an unknown item in a
path, 413 for a body over ``max_body_bytes`` (checked on Content-Length and while reading), 422 for invalid
fields (unknown ids, empty or over-long history, k out of range, wrong types).

Concurrency: endpoints are synchronous and run in the server's thread pool; at most ``max_concurrency``
requests compute at once (the rest wait), so a burst queues instead of oversubscribing the cores.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from sinerec.errors import SinerecError
from sinerec.ids import plain_id
from sinerec.recommend import (
    Recommendation,
    RecommendedItem,
    Recommender,
    RecommendRequest,
    RequestError,
    UnknownItemError,
)
from sinerec.retrieval import IndexSettings, ItemIndex

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["create_app", "create_app_from_env", "serve"]

log = logging.getLogger("sinerec.serve")

ItemId = Annotated[StrictInt | StrictStr, Field(description="an original item id, as in the dataset")]


# ---------------------------------------------------------------------------------------------------------
# Request and response bodies
# ---------------------------------------------------------------------------------------------------------


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"history": [1, 2, 3], "k": 10, "exclude": [], "exclude_seen": True}]})

    history: list[ItemId] = Field(description="original item ids, oldest first; the model sees the last max_len")
    k: StrictInt = Field(10, description="number of items to return")
    exclude: list[ItemId] = Field(default_factory=list, description="items never to return")
    exclude_seen: bool = Field(True, description="remove the history's items from the ranking")


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[RecommendBody]


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
# Body size limit (pure ASGI, so that it runs before the body is read)
# ---------------------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class _BodyTooLarge(HTTPException):
    """Raised while reading: FastAPI passes HTTPExceptions through its body parsing unchanged."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {max_bytes} bytes")


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from Content-Length, else while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, 400, f"Content-Length is not a number: {length[:40]!r}")
                return
            if declared > self.max_bytes:
                await _send_error(send, 413, f"request body of {declared} bytes exceeds the limit of "
                                             f"{self.max_bytes} bytes")
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as exc:  # raised outside FastAPI's handlers (e.g. a route reading raw bodies)
            if not started:
                await _send_error(send, 413, exc.detail)


async def _send_error(send: Callable[[Message], Awaitable[None]], status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 and the parser's message for malformed JSON; else 422 naming each bad field."""
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", err.get("msg", "invalid JSON"))
            return 400, f"malformed JSON body: {reason}"
    messages: dict[str, list[str]] = {}
    for err in errors:
        # A union (int | str item ids) reports one error per member, tagged with the member's type: merge them.
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "int", "str")]
        if err.get("type") == "missing" and not loc:
            messages.setdefault("body", []).append("missing; send a JSON object")
            continue
        msg = err.get("msg", "invalid")
        if err.get("loc", ())[-1:] in (("int",), ("str",)):
            msg = "should be an item id (an integer or a string)"
        where = messages.setdefault(".".join(loc) or "body", [])
        if msg not in where:
            where.append(msg)
    parts = [f"{where}: {' or '.join(msgs)}" for where, msgs in list(messages.items())[:10]]
    more = f" (and {len(messages) - 10} more fields)" if len(messages) > 10 else ""
    return 422, "; ".join(parts) + more


# ---------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------


def create_app(run: LoadedRun, index: ItemIndex | None = None, max_body_bytes: int = 1 << 20, max_history: int = 1000,
               max_k: int = 1000, max_batch: int = 256, max_concurrency: int | None = None) -> FastAPI:
    """The FastAPI app for a loaded run (``sinerec.runs.LoadedRun``) and an index over its item vectors
    (default: exact). Everything is in memory when this returns; no request reads a file."""
    recommender = Recommender(run, index, max_history=max_history)
    slots = threading.BoundedSemaphore(max_concurrency or os.cpu_count() or 1)
    app = FastAPI(title="sinerec", version=_version(),
                  description=f"Recommendations from a trained {run.config.model} run on {run.data.name} "
                              f"({recommender.num_items:,} items); errors are JSON {{\"detail\": ...}}.")
    app.state.recommender = recommender
    errors: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (400, 413, 422)}

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail = _validation_message(exc)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownItemError) and exc.where == "item" else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def check_k(k: int, where: str = "") -> None:
        if not 1 <= k <= max_k:
            raise RequestError(f"{where}k: must be between 1 and {max_k}, got {k}")

    def to_request(body: RecommendBody) -> RecommendRequest:
        return RecommendRequest(body.history, body.k, body.exclude, body.exclude_seen)

    @app.post("/recommend", response_model=RecommendResponse, responses=errors,
              summary="Top k items for a history, with the explanation")
    def recommend(body: RecommendBody) -> dict[str, Any]:
        check_k(body.k)
        with slots:
            rec = recommender.recommend_batch([to_request(body)], prefix=False)[0]
        return _recommendation_out(rec)

    @app.post("/recommend/batch", response_model=BatchResponse, responses=errors,
              summary="Several histories in one call (one model call, one index search)")
    def recommend_batch(body: BatchBody) -> dict[str, Any]:
        if not 1 <= len(body.requests) <= max_batch:
            raise RequestError(f"requests: between 1 and {max_batch} requests per batch, got {len(body.requests)}")
        for i, req in enumerate(body.requests):
            check_k(req.k, f"requests[{i}].")
        with slots:
            recs = recommender.recommend_batch([to_request(r) for r in body.requests])
        return {"results": [_recommendation_out(r) for r in recs]}

    @app.get("/items/{item_id}/similar", response_model=SimilarResponse,
             responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
             summary="Items nearest to an item by inner product of item vectors")
    def similar(item_id: str, k: int = 10) -> dict[str, Any]:
        check_k(k)
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

    try:
        from sinerec.explorer import mount_explorer  # the concept explorer page, when installed
    except ImportError:
        pass
    else:
        mount_explorer(app, run)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def _version() -> str:
    from sinerec import __version__

    return __version__


def create_app_from_env() -> FastAPI:
    """The app factory of ``uvicorn --factory sinerec.serve:create_app_from_env`` (and gunicorn's uvicorn
    workers): each worker loads the run and index named by ``SINEREC_*`` environment variables
    (:mod:`sinerec.deploy`) and serves them with ``/metrics`` and the optional access log."""
    from sinerec.deploy import build_service, settings_from_env

    return build_service(settings_from_env(os.environ))


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, index_path: str | Path | None = None,
          settings: IndexSettings | None = None, nprobe: int | None = None, ef_search: int | None = None,
          threads: int = 1, log_level: str = "warning", workers: int = 1, metrics: bool = True,
          access_log: bool = False, **app_options: Any) -> None:
    """Load the run and the index (``index_path``, or built from ``settings``), then serve until stopped.

    ``threads`` is the intra-op thread count of torch and Faiss per request: requests already run in
    parallel, and a single history's model call is too small to gain from more threads. ``workers`` > 1
    starts that many processes through the app factory (:func:`create_app_from_env`), each loading the run
    (a saved torch or flat ``index_path`` is memory-mapped and shared); their ``/metrics`` is summed over the
    workers (prometheus_client's multiprocess mode, in a temporary folder unless
    ``PROMETHEUS_MULTIPROC_DIR`` is set). ``app_options`` are :func:`create_app`'s limits.
    """
    import tempfile

    import uvicorn

    from sinerec.deploy import ServiceSettings, build_service, check_service, settings_from_env, settings_to_env

    if workers < 1:
        raise SinerecError(f"workers: must be >= 1, got {workers}")
    service = ServiceSettings(Path(run_dir), Path(index_path) if index_path is not None else None,
                              settings or IndexSettings(), nprobe, ef_search, threads, metrics, access_log,
                              dict(app_options))
    where = f"http://{host}:{port} (API docs: /docs{', metrics: /metrics' if metrics else ''})"
    if workers == 1:
        app = build_service(service)
        run, index = app.state.run, app.state.recommender.index
        print(f"sinerec: serving {run.config.model} ({run.data.name}, {len(run.data.item_ids) - 1:,} items, index "
              f"{index.settings.describe()}) on {where}", flush=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        return
    check_service(service)
    env = settings_to_env(service)
    settings_from_env(env)  # what the workers will read, checked once here
    os.environ.update(env)  # the workers are started with this environment
    if metrics and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sinerec-metrics-")
    print(f"sinerec: serving {run_dir} with {workers} workers on {where}", flush=True)
    uvicorn.run("sinerec.serve:create_app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level=log_level, access_log=False)
