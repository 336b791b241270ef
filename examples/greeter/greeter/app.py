"""The ASGI app: plain ASGI, no framework, so every step of a request is on this page.

GET /hello?name=X  -> {"greeting": "hello, X", "served_by": ..., "version": ...}
GET /livez         -> 200 while the process runs
GET /readyz        -> 200 while serving, 503 once draining (the load balancer stops sending)
GET /startupz      -> 200 once started
Errors are JSON `{"error": {"code", "message"}}`. `x-served-by` is added to every response
by uvicorn (see greeter.serve); while draining, responses say `connection: close`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from greeter.settings import Settings

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_NAME = 64
MAX_DELAY_MS = 2000
_PATHS = ("/hello", "/livez", "/readyz", "/startupz")


@dataclass
class Lifecycle:
    """Where the process is in its life; the server flips these, the probes read them."""

    started: bool = False
    draining: bool = False


def create_app(settings: Settings, lifecycle: Lifecycle) -> App:
    """The greeter ASGI app for one process."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets are switched off in greeter.serve
            return
        status, body = await _route(scope, settings, lifecycle)
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        if lifecycle.draining:  # the client reconnects, and the load balancer picks a ready pod
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


async def _route(scope: Scope, settings: Settings, lifecycle: Lifecycle) -> tuple[int, dict[str, Any]]:
    path, method = scope["path"], scope["method"]
    if path not in _PATHS:
        return _error(404, "not_found", f"no route {path[:100]!r}: try GET /hello?name=you")
    if method not in ("GET", "HEAD"):
        return _error(405, "method_not_allowed", f"{path} answers GET only")
    if path == "/livez":
        return 200, {"status": "alive"}
    if path == "/readyz":
        return (503, {"status": "draining"}) if lifecycle.draining else (200, {"status": "ready"})
    if path == "/startupz":
        return (200, {"status": "started"}) if lifecycle.started else (503, {"status": "starting"})
    return await _hello(scope, settings)


async def _hello(scope: Scope, settings: Settings) -> tuple[int, dict[str, Any]]:
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    name = query.get("name", "world")
    if not 1 <= len(name) <= MAX_NAME:
        return _error(422, "invalid_name", f"name must be 1 to {MAX_NAME} characters, got {len(name)}")
    # delay_ms stands in for real work (a database call, say): a request still in flight when
    # the pod drains must finish. Capped, so it cannot hold a connection for long.
    delay = query.get("delay_ms", "0")
    if not delay.isascii() or not delay.isdigit() or int(delay) > MAX_DELAY_MS:
        return _error(422, "invalid_delay_ms", f"delay_ms must be a whole number from 0 to {MAX_DELAY_MS}")
    await asyncio.sleep(int(delay) / 1000)
    return 200, {
        "greeting": f"hello, {name}",
        "served_by": settings.served_by,
        "version": settings.app_version,
    }


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}
