"""ResponseHeadersMiddleware (app/ledger/middleware/headers.py) run as plain ASGI: what it
adds itself, and what it leaves to a server that writes the process headers."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from ledger.middleware.headers import SECURITY_HEADERS, ResponseHeadersMiddleware, process_headers


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _headers(middleware: ResponseHeadersMiddleware) -> list[tuple[bytes, bytes]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"req-1")]}
    asyncio.run(middleware(scope, receive, send))
    return list(sent[0]["headers"])


def test_under_any_server_the_app_adds_the_process_headers() -> None:
    headers = _headers(ResponseHeadersMiddleware(_ok, "blue/pod-1", lambda: False))
    assert headers == [
        (b"content-type", b"text/plain"),
        (b"x-request-id", b"req-1"),
        *process_headers("blue/pod-1"),
    ]
    assert process_headers("blue/pod-1") == ((b"x-served-by", b"blue/pod-1"), *SECURITY_HEADERS)


def test_under_ledgers_server_it_adds_only_what_differs_per_response() -> None:
    middleware = ResponseHeadersMiddleware(_ok, "blue/pod-1", lambda: True, server_adds_process_headers=True)
    assert _headers(middleware) == [
        (b"content-type", b"text/plain"),
        (b"x-request-id", b"req-1"),
        (b"connection", b"close"),  # draining, and no request waits behind this one
    ]
