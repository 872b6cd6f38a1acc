"""The uvicorn server under ``sinerec serve``, with limits on what a client can hold.

uvicorn alone keeps a connection open forever while a client sends its request slowly (a "slowloris"): its
keep-alive timer runs only between requests, never while a request is still arriving. Here:

- ``read_timeout`` (:class:`ReadTimeoutH11Protocol`): a request must arrive whole (head and body) within
  this many seconds of the connection opening or of the previous response; otherwise the connection is
  closed. Waiting for the answer does not count: the timer stops once the request is complete.
- ``keep_alive``: an idle connection between requests is closed after this many seconds (uvicorn's
  ``timeout_keep_alive``).
- ``max_connections``: beyond this many open connections (or requests in flight), a new request gets 503 at
  once (uvicorn's ``limit_concurrency``).
- a request head still incomplete past 16 KiB gets 400 (h11's default ``h11_max_incomplete_event_size``,
  made explicit here).

The "serving on ..." line is printed once the socket is bound (:class:`AnnouncingServer`), not before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sinerec.errors import ConfigError

__all__ = ["AnnouncingServer", "ReadTimeoutH11Protocol", "ServerLimits", "run_server", "run_workers",
           "server_config"]

MAX_HEAD_BYTES = 16 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits of :func:`server_config` (see the module docstring); each must be > 0."""

    read_timeout: float = 10.0  # seconds for a request to arrive whole
    keep_alive: int = 5  # seconds an idle connection stays open between requests (uvicorn takes an int)
    max_connections: int = 256  # open connections (or requests in flight) before new requests get 503

    def __post_init__(self) -> None:
        for name in ("read_timeout", "keep_alive", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"serve.{name}: must be a number > 0, got {value!r}")


class ReadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a read deadline: ``config.sinerec_read_timeout`` seconds for a request to
    arrive whole, counted from the connection opening or the previous response's end."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.read_timeout: float = getattr(config, "sinerec_read_timeout", ServerLimits().read_timeout)
        self.read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()  # the request is complete (or the connection is over): computing is not reading
        elif self.read_deadline is None:
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self.read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _read_timed_out(self) -> None:
        self.read_deadline = None
        if not self.transport.is_closing() and self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE):
            self.transport.close()


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints ``banner`` once its socket is bound and listening."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            print(self.banner, flush=True)


def server_config(app: Any, host: str, port: int, limits: ServerLimits | None = None, **options: Any) -> uvicorn.Config:
    """A uvicorn Config for ``app`` with the :class:`ServerLimits` applied (``options`` go to uvicorn).

    The read timeout travels as the attribute ``sinerec_read_timeout`` of the config, where
    :class:`ReadTimeoutH11Protocol` reads it (a config is what uvicorn hands to each worker's protocols).
    """
    limits = limits or ServerLimits()
    config = uvicorn.Config(app, host=host, port=port, http=ReadTimeoutH11Protocol,
                            timeout_keep_alive=limits.keep_alive, limit_concurrency=limits.max_connections,
                            h11_max_incomplete_event_size=MAX_HEAD_BYTES, **options)
    config.sinerec_read_timeout = limits.read_timeout  # type: ignore[attr-defined]
    return config


def run_server(config: uvicorn.Config, banner: str) -> None:
    """Serve until stopped; ``banner`` is printed once the socket is bound."""
    AnnouncingServer(config, banner).run()


def run_workers(config: uvicorn.Config, banner: str) -> None:
    """Serve ``config`` (an app factory's import string with ``workers`` > 1) from that many processes until
    stopped: the socket is bound here, ``banner`` printed, then uvicorn's supervisor starts the workers, each
    with this config (so with the read timeout of :class:`ReadTimeoutH11Protocol`)."""
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    print(banner, flush=True)
    Multiprocess(config, sockets=[sock]).run()
