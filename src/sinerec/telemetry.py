"""Request telemetry for the HTTP service: Prometheus metrics at ``/metrics`` and an access log.

:func:`instrument` wraps an app (``sinerec.serve.create_app``) in one pure-ASGI middleware that times every
HTTP request, from the first byte received to the last byte sent, and records it as

- ``sinerec_http_requests_total{method, route, status}``: a counter;
- ``sinerec_http_request_duration_seconds{method, route}``: a histogram (:data:`LATENCY_BUCKETS`);
- one line on the ``sinerec.access`` logger (INFO): ``CLIENT "METHOD PATH" STATUS DURATIONms``.

``route`` is the route's path template (``/items/{item_id}/similar``), never the raw path, so that the
number of series stays bounded; a path no route matches is ``<unmatched>``. Requests refused before routing
(a 413 from the body limit) carry the route they were sent to.

Several workers (``uvicorn --workers N``, gunicorn): a scrape reaches one worker, so per-process counters
would jump between workers' values. When ``PROMETHEUS_MULTIPROC_DIR`` names a folder (``sinerec serve
--workers N`` makes one), prometheus_client's multiprocess mode is used: each worker writes its values to
memory-mapped files there and ``/metrics`` sums the counters and histograms of every worker, so any worker's
answer is the whole service's. Without it each process exposes its own registry (one worker: exact).

The metrics need ``prometheus_client`` (``pip install 'sinerec[serve]'``); the access log needs nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import Match

__all__ = ["LATENCY_BUCKETS", "access_log", "instrument", "metrics_available"]

access_log = logging.getLogger("sinerec.access")

#: Latency histogram bounds in seconds: a single recommendation takes about a millisecond on a small
#: catalogue and tens of milliseconds on a million items; a batch of 256 up to a second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def metrics_available() -> bool:
    """Whether prometheus_client is installed (``/metrics`` needs it)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class _Metrics:
    """The counter and the histogram, in a registry of their own (several apps in one process do not clash)
    or, in multiprocess mode, in the shared files that every worker's scrape sums."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector

        self.registry = CollectorRegistry()
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if multiprocess:  # values live in the folder's files; the registry reads every worker's on scrape
            MultiProcessCollector(self.registry)
        owner = None if multiprocess else self.registry
        self.requests = Counter("sinerec_http_requests", "HTTP requests answered, by route and status",
                                ["method", "route", "status"], registry=owner)
        self.latency = Histogram("sinerec_http_request_duration_seconds", "HTTP request latency (server side)",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=owner)

    def exposition(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Telemetry:
    """The ASGI middleware: time, count and log each HTTP request; everything else passes through."""

    def __init__(self, app: ASGIApp, router: FastAPI, metrics: _Metrics | None, log: bool) -> None:
        self.app = app
        self.router = router
        self.metrics = metrics
        self.log = log

    def route_of(self, scope: Scope) -> str:
        for route in self.router.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", "<unmatched>"))
        return "<unmatched>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client sees if the app fails before it starts a response

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            seconds = time.perf_counter() - start
            method = scope.get("method", "")
            if self.metrics is not None:
                route = self.route_of(scope)
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.latency.labels(method, route).observe(seconds)
            if self.log:
                client = scope.get("client") or ("-", 0)
                query = scope.get("query_string", b"").decode("latin-1")
                path = scope.get("path", "") + (f"?{query}" if query else "")
                access_log.info('%s "%s %s" %d %.1fms', client[0], method, path, status, seconds * 1000)


def instrument(app: FastAPI, metrics: bool = True, log_requests: bool = False) -> FastAPI:
    """Add ``GET /metrics`` (when ``metrics``) and the timing middleware (when ``metrics`` or
    ``log_requests``) to ``app``, before it starts; returns the app.

    The middleware is outermost, so a request refused by an inner middleware (the body limit) is counted and
    logged too. Raises ImportError naming the extra when ``metrics`` is asked for without prometheus_client.
    """
    recorder = None
    if metrics:
        if not metrics_available():
            raise ImportError("/metrics needs prometheus_client: pip install 'sinerec[serve]' (or serve with "
                              "--no-metrics)")
        recorder = _Metrics()
        exposition = recorder.exposition  # the text format, every worker's values in multiprocess mode
        app.add_api_route("/metrics", exposition, methods=["GET"], include_in_schema=False)
    if recorder is not None or log_requests:
        if log_requests and access_log.level == logging.NOTSET:
            access_log.setLevel(logging.INFO)
        app.add_middleware(_Telemetry, router=app, metrics=recorder, log=log_requests)
    return app
