"""Per-request metrics and the access log, from one timing of each request."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import CLIENT_CLOSED_REQUEST
from ledger.metrics import Metrics
from ledger.middleware.headers import request_id_of

access_log = logging.getLogger("ledger.access")

# Probes and scrapes arrive every few seconds from every kubelet and Prometheus: they are
# counted in metrics but logged only at DEBUG, so they do not drown the requests that matter.
QUIET_PREFIXES = ("/health/", "/metrics")


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or "unmatched"."""
    route = scope.get("route")
    return getattr(route, "path", "unmatched") if route is not None else "unmatched"


class ObserveMiddleware:
    """Counts requests by method, route and status, times them, and logs one line each."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[object, object]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        in_flight = self.metrics.in_flight
        in_flight.inc()

        async def send_and_observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_observe)
        finally:
            in_flight.dec()
            if not status:  # no response was sent: the client left, or the app crashed
                status = CLIENT_CLOSED_REQUEST if scope.get("state", {}).get("client_closed") else 500
            self.record(scope, status, time.perf_counter() - start)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """Count and time one answered request, and log it."""
        method, route = scope["method"], route_template(scope)
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.latency.labels(method, route),
            )
            self._children[key] = children
        counter, histogram = children
        counter.inc()  # type: ignore[attr-defined]
        histogram.observe(seconds)  # type: ignore[attr-defined]
        level = logging.DEBUG if scope["path"].startswith(QUIET_PREFIXES) else logging.INFO
        if access_log.isEnabledFor(level):
            access_log.log(
                level,
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={
                    "request_id": request_id_of(scope),
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
