"""ledger's protocol writes a response head together with its first body message (one send
for a small response, where uvicorn's own protocol makes two), the bytes unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from ledger.http_protocol import Connections, HttpLimits, protocol_class

BODY = b'{"status":"ok"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"application/json")]
    if scope["path"] != "/chunked":
        headers.append((b"content-length", b"%d" % len(BODY)))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("peername", "sockname") else default


async def _writes(http: Any, request: bytes) -> list[bytes]:
    config = uvicorn.Config(
        app, http=http, lifespan="off", access_log=False, log_config=None, server_header=False
    )
    config.load()
    protocol_type: Any = config.http_protocol_class
    protocol = protocol_type(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(10):  # the request's task runs
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport.writes


def _both(request: bytes) -> tuple[list[bytes], list[bytes]]:
    ledger = asyncio.run(_writes(protocol_class("test", Connections(HttpLimits())), request))
    stock = asyncio.run(_writes("httptools", request))
    return ledger, stock


def test_a_response_with_a_content_length_is_one_write_of_the_same_bytes() -> None:
    ledger, stock = _both(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
    assert len(ledger) == 1 and len(stock) == 2
    assert ledger[0].endswith(BODY)
    assert ledger[0].split(b"date: ")[0] == b"".join(stock).split(b"date: ")[0]


def test_head_and_chunked_responses_are_written_as_uvicorn_writes_them() -> None:
    for request in (b"HEAD /x HTTP/1.1\r\nhost: x\r\n\r\n", b"GET /chunked HTTP/1.1\r\nhost: x\r\n\r\n"):
        ledger, stock = _both(request)
        assert len(ledger) == len(stock)
        strip = [w.split(b"date: ")[0] for w in ledger], [w.split(b"date: ")[0] for w in stock]
        assert strip[0] == strip[1]
