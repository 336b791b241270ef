"""`GET /health/live` answered in one step, outside the middleware stack.

Every kubelet asks every pod for liveness every few seconds, and the answer depends on the
process alone: no routing, request object, error translation or rate limit (probes are
exempt), and no wrapper per middleware around each message. This middleware sits outermost
and builds the answer with the stack's own parts: the request id and headers of
`ResponseHeadersMiddleware` (`x-served-by`, security, `connection: close` while draining),
the trace context of the tracing middleware, and the metrics and access log of
`ObserveMiddleware`, under the route's own label. So the answer and what it leaves behind
are the same as the router's; only the work in between is skipped. Anything else goes down
the stack untouched.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.middleware.headers import ResponseHeadersMiddleware
from ledger.middleware.observe import ObserveMiddleware
from ledger.middleware.tracing import current_trace, start_trace

LIVE_PATH = "/health/live"
LIVE_BODY = b'{"status":"ok"}'
_HEADERS = ((b"content-type", b"application/json"), (b"content-length", b"%d" % len(LIVE_BODY)))


class _Route:
    """What the metrics middleware reads from `scope["route"]`: the path template."""

    path = LIVE_PATH


_LIVE_ROUTE = _Route()


class LivenessMiddleware:
    """Answers `GET /health/live` (and `HEAD`) with 200 `{"status":"ok"}` itself.

    `headers` and `observe` are the stack's own middleware below this one (the answer gets
    their headers and is counted by them).
    """

    def __init__(self, app: ASGIApp, headers: ResponseHeadersMiddleware, observe: ObserveMiddleware) -> None:
        self.app = app
        self.headers = headers
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LIVE_PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope["route"] = _LIVE_ROUTE
        request_id = self.headers.request_id(scope)
        trace, trace_headers = start_trace(scope)
        token = current_trace.set(trace)  # the access log line (DEBUG for probes) carries it
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_HEADERS, *trace_headers, *self.headers.headers_for(scope, request_id)],
                }
            )
            await send({"type": "http.response.body", "body": LIVE_BODY})
            self.observe.record(scope, 200, time.perf_counter() - start)
        finally:
            current_trace.reset(token)
