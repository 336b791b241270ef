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

from ledger.entropy import random_bytes
from ledger.metrics import RequestSeries
from ledger.middleware.headers import ResponseHeadersMiddleware, valid_request_id
from ledger.middleware.observe import ObserveMiddleware
from ledger.middleware.tracing import current_trace, response_headers, trace_context

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
        self._series: dict[str, RequestSeries] = {}  # by method: GET, HEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LIVE_PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope["route"] = _LIVE_ROUTE
        # What ResponseHeadersMiddleware.request_id and tracing.start_trace do, in one pass
        # over the headers and one draw of random bytes: this is the hot path.
        request_id: bytes | None = None
        traceparent: list[str] = []
        tracestate: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if request_id is None:
                    request_id = valid_request_id(value) or b""
            elif name == b"traceparent":
                traceparent.append(value.decode("latin-1"))
            elif name == b"tracestate":
                tracestate.append(value.decode("latin-1"))
        entropy = random_bytes(40)  # a span (and trace) id, then a request id
        request_id = request_id or entropy[24:].hex().encode()
        trace = trace_context(traceparent, tracestate, entropy[:24])
        state = scope.setdefault("state", {})
        state["request_id"], state["trace"] = request_id.decode(), trace
        token = current_trace.set(trace)  # the access log line (DEBUG for probes) carries it
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        *_HEADERS,
                        *response_headers(trace),
                        *self.headers.headers_for(scope, request_id),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": LIVE_BODY})
            seconds = time.perf_counter() - start
            series = self._series.get(scope["method"])
            if series is None:
                series = self._series[scope["method"]] = self.observe.metrics.http.series(
                    scope["method"], LIVE_PATH, 200
                )
            series.observe(seconds)
            self.observe.log(scope, LIVE_PATH, 200, seconds)
        finally:
            current_trace.reset(token)
