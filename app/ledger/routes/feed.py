"""WS /ws/transfers: every committed transfer in the cluster, as JSON text messages."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import Callable

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ledger.client_address import ClientAddress
from ledger.errors import error_body
from ledger.feed import Subscriber
from ledger.middleware.headers import process_headers, request_id_for
from ledger.ratelimit import TokenBuckets
from ledger.runtime import Runtime

GOING_AWAY = 1001  # the server is draining: reconnect (the load balancer sends you elsewhere)
POLICY_VIOLATION = 1008  # too many connections from one client
TRY_AGAIN_LATER = 1013  # this subscriber fell too far behind


class PerClientLimit:
    """At most `limit` open websockets per client address, and `total` in all."""

    def __init__(self, limit: int, total: int) -> None:
        self.limit, self.total = limit, total
        self._open: Counter[str] = Counter()
        self.count = 0

    def acquire(self, client: str) -> bool:
        if self._open[client] >= self.limit:
            return False
        self._open[client] += 1
        self.count += 1
        return True

    def release(self, client: str) -> None:
        self.count -= 1
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


async def _refuse_handshake(
    websocket: WebSocket, served_by: str, wait: float, status: int, code: str, message: str, close_code: int
) -> None:
    """`status` with Retry-After instead of the upgrade, where the server supports it; else
    the handshake is accepted and closed with `close_code`.

    The refusal carries the headers of every HTTP answer (request id, who served it, security):
    uvicorn writes its default headers on the upgrade, not on a refused one."""
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(close_code)
        return
    body = error_body(code, message)
    await websocket.send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                (b"x-request-id", request_id_for(websocket.scope)),
                *process_headers(served_by),
            ],
        }
    )
    await websocket.send({"type": "websocket.http.response.body", "body": body})


def feed_routes(runtime: Runtime, client_address: ClientAddress) -> list[WebSocketRoute]:
    settings = runtime.settings
    limit = PerClientLimit(settings.ws_max_per_client, settings.ws_max_connections)
    handshakes = (
        TokenBuckets(
            settings.ws_handshakes_per_minute, lambda: 1, max_clients=settings.rate_limit_max_clients
        )
        if settings.ws_handshakes_per_minute
        else None
    )
    closes = runtime.metrics.websocket_closes

    async def transfers(websocket: WebSocket) -> None:
        client = client_address.key(websocket.scope)
        wait = handshakes.take(client) if handshakes is not None else 0.0
        if wait > 0.0:
            closes.labels("rate_limited").inc()
            await _refuse_handshake(
                websocket,
                settings.served_by,
                wait,
                429,
                "rate_limited",
                f"too many websocket handshakes: the limit is {settings.ws_handshakes_per_minute} per minute per client",
                POLICY_VIOLATION,
            )
            return
        if limit.count >= limit.total:  # every socket is a descriptor: keep the reserve for HTTP
            closes.labels("over_capacity").inc()
            await _refuse_handshake(
                websocket,
                settings.served_by,
                1,
                503,
                "over_capacity",
                f"the server is at its websocket limit ({limit.total}); retry",
                TRY_AGAIN_LATER,
            )
            return
        acquired = limit.acquire(client)  # before any await: the total cannot be overshot
        try:
            # Accept first: a close before the handshake completes reaches the client as a bare
            # HTTP 403, without the close code and reason that tell it what to do.
            await websocket.accept()
            if runtime.draining:
                closes.labels("draining").inc()
                await websocket.close(GOING_AWAY, "server is draining; reconnect")
                return
            if not acquired:
                closes.labels("too_many").inc()
                await websocket.close(
                    POLICY_VIOLATION,
                    f"too many websocket connections from this address (limit {limit.limit})",
                )
                return
            subscriber = runtime.feed.subscribe()
            runtime.metrics.websockets.inc()
            try:
                await _serve(websocket, subscriber, runtime.drain_started, lambda r: closes.labels(r).inc())
            finally:
                runtime.feed.unsubscribe(subscriber)
                runtime.metrics.websockets.dec()
        finally:
            if acquired:
                limit.release(client)

    return [WebSocketRoute("/ws/transfers", transfers)]


async def _serve(
    websocket: WebSocket,
    subscriber: Subscriber,
    drain_started: asyncio.Event,
    on_close: Callable[[str], None],
) -> None:
    async def pump() -> None:
        while True:
            await websocket.send_text(await subscriber.queue.get())

    async def until_client_leaves() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    tasks = {
        asyncio.ensure_future(pump()): None,
        asyncio.ensure_future(until_client_leaves()): None,
        asyncio.ensure_future(drain_started.wait()): (
            "draining",
            GOING_AWAY,
            "server is draining; reconnect",
        ),
        asyncio.ensure_future(subscriber.overflowed.wait()): (
            "too_slow",
            TRY_AGAIN_LATER,
            "subscriber too slow; reconnect",
        ),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    for task in done:
        close = tasks[task]
        if close is not None:
            reason, code, text = close
            on_close(reason)
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client left meanwhile
                await websocket.close(code, text)
            return
