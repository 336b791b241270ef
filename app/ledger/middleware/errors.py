"""Every error leaves as JSON `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import ApiError, DatabaseTimeout, DatabaseUnavailable, error_body
from ledger.middleware.headers import request_id_of

log = logging.getLogger("ledger.errors")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ErrorMiddleware:
    """Turns ApiError, Starlette's HTTPException and any crash into a JSON error response.

    A client that disconnects mid-request is no error of ours: it is logged at INFO and
    counted as 499 (scope state `client_closed`), not as a 500.

    A lost database connection is a 503 with Retry-After (the client retries with its
    idempotency key), and `on_database_down` is told so the pool can reconnect. Only the
    store raises DatabaseUnavailable, from the driver's own errors: any other exception,
    an OSError included, is a 500 and leaves the pool alone.
    """

    def __init__(self, app: ASGIApp, on_database_down: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self._on_database_down = on_database_down

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Starlette's router raises HTTPException for 404/405 (instead of answering in plain
        # text) when it finds an "app" in the scope.
        scope.setdefault("app", self)
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ApiError as exc:
            if response_started:
                raise
            if isinstance(exc, DatabaseTimeout | DatabaseUnavailable):
                self._database_trouble(scope, exc)
            await _send_error(send, exc.status, exc.code, exc.message, exc.details, exc.headers)
        except ClientDisconnect:
            # The client left before its request was read: nothing to answer, nothing broken.
            scope.setdefault("state", {})["client_closed"] = True
            log.info("client disconnected mid-request", extra={"request_id": request_id_of(scope)})
        except HTTPException as exc:
            if response_started:
                raise
            code = _HTTP_CODES.get(exc.status_code, "http_error")
            await _send_error(send, exc.status_code, code, exc.detail, None, dict(exc.headers or {}))
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id_of(scope)})
            if response_started:
                raise
            await _send_error(send, 500, "internal_error", "internal server error", None, {})

    def _database_trouble(self, scope: Scope, exc: DatabaseTimeout | DatabaseUnavailable) -> None:
        """Log a database outage or timeout; on an outage, have the pool reconnect."""
        cause = type(exc.__cause__ or exc).__name__
        if isinstance(exc, DatabaseUnavailable):
            self._on_database_down()
            log.warning("database unavailable", extra={"request_id": request_id_of(scope), "error": cause})
        else:
            log.warning(
                "database statement timed out", extra={"request_id": request_id_of(scope), "error": cause}
            )


async def _send_error(
    send: Send, status: int, code: str, message: str, details: object, headers: dict[str, str]
) -> None:
    body = error_body(code, message, details)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
