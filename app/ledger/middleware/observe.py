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
        self._http = metrics.http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        http = self._http
        http.in_flight += 1

        async def send_and_observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_observe)
        finally:
            http.in_flight -= 1
            if not status:  # no response was sent: the client left, or the app crashed
                status = CLIENT_CLOSED_REQUEST if scope.get("state", {}).get("client_closed") else 500
            self.record(scope, status, time.perf_counter() - start)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """Count and time one answered request, and log it."""
        route = route_template(scope)
        self._http.series(scope["method"], route, status).observe(seconds)
        self.log(scope, route, status, seconds)

    def log(self, scope: Scope, route: str, status: int, seconds: float) -> None:
        """The access log line of one answered request (DEBUG for probes and scrapes)."""
        method = scope["method"]
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
