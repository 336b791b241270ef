"""`GET /health/live` answered without the router.

Every kubelet asks every pod for liveness every few seconds, and the answer depends on the
process alone: it needs no routing, no request object, no error translation and no rate
limit (probes are exempt). This middleware sits inside the response-headers and metrics
middleware, so the answer carries the same headers (request id, `x-served-by`, security,
`connection: close` while draining) and is counted under the same route label as before;
only the work in between is skipped. Anything else goes on down the stack untouched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

LIVE_PATH = "/health/live"
LIVE_BODY = b'{"status":"ok"}'
_HEADERS = ((b"content-type", b"application/json"), (b"content-length", b"%d" % len(LIVE_BODY)))


class _Route:
    """What the metrics middleware reads from `scope["route"]`: the path template."""

    path = LIVE_PATH


_LIVE_ROUTE = _Route()


class LivenessMiddleware:
    """Answers `GET /health/live` (and `HEAD`) with 200 `{"status":"ok"}` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LIVE_PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        scope["route"] = _LIVE_ROUTE
        # A fresh list: the middleware above adds its headers to the message it is given.
        await send({"type": "http.response.start", "status": 200, "headers": list(_HEADERS)})
        await send({"type": "http.response.body", "body": LIVE_BODY})
