"""What the HTTP server refuses before a route runs: foreign Host headers and oversized bodies.

Both are pure ASGI middleware (they run before the body is read) and answer JSON ``{"detail": ...}`` like
every other error of the API:

- :class:`TrustedHosts`: 400 for a request whose ``Host`` header is not one of the allowed names. A server
  bound to loopback is otherwise reachable from any web page through DNS rebinding (a name the attacker
  controls, re-pointed at 127.0.0.1): the browser sends that name as ``Host``, so checking it closes the hole.
  :func:`trusted_hosts` gives the names ``sinerec serve`` allows: the loopback names, the ``--host`` it binds
  (unless a wildcard) and each ``--allowed-host`` (``*`` allows any).
- :class:`BodyLimit`: 413 for a body over ``max_bytes``, at once from Content-Length, else while it streams.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

__all__ = ["LOOPBACK_NAMES", "BodyLimit", "TrustedHosts", "host_name", "is_loopback", "trusted_hosts"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches this machine only (``localhost``, 127.x.y.z, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def trusted_hosts(bind: str, allowed: Iterable[str] = ()) -> list[str]:
    """The Host names a server bound to ``bind`` answers: loopback names, ``bind`` itself unless it is a
    wildcard (0.0.0.0, ::), and ``allowed`` (``"*"``: any host; the list is then ``["*"]``)."""
    names = [*LOOPBACK_NAMES, *([] if bind in WILDCARDS else [bind]), *allowed]
    if "*" in names:
        return ["*"]
    return list(dict.fromkeys(host_name(n) for n in names if n.strip()))


def host_name(header: str) -> str:
    """A Host header's name, lower-cased, without port, brackets or trailing dot: ``"[::1]:80"`` -> ``"::1"``."""
    value = header.strip().lower()
    if value.startswith("["):  # [IPv6]:port
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class TrustedHosts:
    """400 ``{"detail": "Host header 'evil.example' is not allowed ..."}`` unless the request's Host is in
    ``allowed`` (see :func:`trusted_hosts`); ``["*"]`` lets every request through."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {host_name(h) for h in allowed}
        self.any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.any:
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if host_name(raw) not in self.allowed:
            shown = repr(raw[:60]) if raw else "missing"
            await send_error(send, 400, f"Host header {shown} is not allowed: this server answers "
                                        f"{', '.join(sorted(self.allowed))} (add names with --allowed-host)")
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised while reading: FastAPI passes HTTPExceptions through its body parsing unchanged."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {max_bytes} bytes")


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from Content-Length, else while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.strip().isdigit() or not length.strip().isascii():
                await send_error(send, 400, f"Content-Length is not a number: {length[:40]!r}")
                return
            digits = length.strip().decode()
            if len(digits) > 18 or int(digits) > self.max_bytes:  # never int() on thousands of digits
                shown = digits if len(digits) <= 18 else f"{digits[:18]}... ({len(digits)} digits)"
                await send_error(send, 413, f"request body of {shown} bytes exceeds the limit of "
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
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:  # raised outside FastAPI's handlers (e.g. a route reading raw bodies)
            if not started:
                await send_error(send, 413, exc.detail)


async def send_error(send: Send, status: int, detail: str) -> None:
    """Answer ``{"detail": detail}`` with ``status`` and close the connection."""
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
