"""Headers on every HTTP response: request id, who served it, security, and drain signalling."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.entropy import random_bytes

_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

# For a JSON API (OWASP Secure Headers Project, 2025): nothing may be framed, run or sniffed.
# X-XSS-Protection is deliberately absent: OWASP now advises against it.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
    (b"cache-control", b"no-store"),
)


def process_headers(served_by: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers every response of one process carries: who served it, and security."""
    return ((b"x-served-by", served_by.encode()), *SECURITY_HEADERS)


def request_id_of(scope: Scope) -> str:
    """The request id this middleware assigned ("" outside of it)."""
    return str(scope.get("state", {}).get("request_id", ""))


class ResponseHeadersMiddleware:
    """Adds `x-request-id`, `x-served-by`, security headers and, while draining,
    `connection: close`, so keep-alive clients reconnect to a pod that is staying (not while
    more requests wait on the connection: the last of them gets it, so none goes unanswered).

    An incoming `x-request-id` is kept when it is a sane token, otherwise replaced.

    With `server_adds_process_headers`, the server writes `x-served-by` and the security
    headers on every response itself (ledger's server does: `uvicorn.Config(headers=...)`,
    rendered once per second, not once per response), and this middleware leaves them out.
    """

    def __init__(
        self,
        app: ASGIApp,
        served_by: str,
        is_draining: Callable[[], bool],
        *,
        server_adds_process_headers: bool = False,
    ) -> None:
        self.app = app
        self._static = () if server_adds_process_headers else process_headers(served_by)
        self._is_draining = is_draining

    def request_id(self, scope: Scope) -> bytes:
        """This request's id (the incoming one when sane, else new), kept in scope state."""
        request_id = request_id_for(scope)
        scope.setdefault("state", {})["request_id"] = request_id.decode()
        return request_id

    def headers_for(self, scope: Scope, request_id: bytes) -> list[tuple[bytes, bytes]]:
        """The headers this middleware adds to the response of this request."""
        headers = [(b"x-request-id", request_id), *self._static]
        if self._is_draining() and not _more_requests(scope):
            headers.append((b"connection", b"close"))
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.request_id(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers_for(scope, request_id)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _more_requests(scope: Scope) -> bool:
    """Whether ledger's HTTP protocol says more requests already wait on this connection."""
    more = scope.get("extensions", {}).get("ledger.connection", {}).get("more_requests")
    return bool(more and more())


def request_id_for(scope: Scope) -> bytes:
    """The id of this request (or websocket handshake): its incoming `x-request-id` when
    sane, else a new one."""
    return _incoming_request_id(scope) or random_bytes(16).hex().encode()  # a uuid4's entropy


def _incoming_request_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return valid_request_id(value)
    return None


def valid_request_id(value: bytes) -> bytes | None:
    """An incoming `x-request-id` if it is a sane token (kept), else None (replaced)."""
    return value if _VALID_REQUEST_ID.match(value) else None
