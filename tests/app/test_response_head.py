"""ledger's protocol writes response heads with header lines it checked before reused
(app/ledger/http_protocol.py `_Cycle`): the same bytes and the same rules as uvicorn's own
protocol, checked side by side against it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from cutover.local.ports import free_port
from ledger.http_protocol import Connections, HttpLimits, _default_lines, protocol_class
from ledger.middleware.headers import SECURITY_HEADERS


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    who = path.rsplit("/", 1)[-1].encode()
    headers = [(b"Content-Type", b"text/plain"), (b"x-served-by", who), *SECURITY_HEADERS]
    body = b"hello"
    if path.startswith("/bad"):
        headers.append((b"x-bad", b"line\r\nbreak"))
    if path.startswith("/close"):
        headers.append((b"connection", b"Close"))
    if path.startswith("/chunked"):
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hel", "more_body": True})
        await send({"type": "http.response.body", "body": b"lo"})
        return
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(http: Any, headers: list[tuple[str, str]] | None = None) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=http, log_config=None, access_log=False, headers=headers
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert instance.started
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from serve(protocol_class("test/0", Connections(HttpLimits())))


@pytest.fixture(scope="module")
def uvicorns() -> Iterator[str]:
    yield from serve("httptools")


# Default headers as ledger's server configures them (uvicorn.Config(headers=...)): the
# process's own, rendered once per list uvicorn holds (a new one each second, for the date).
DEFAULTS = [("X-Process", "p/1"), ("cache-control", "no-store")]
MEANINGFUL_DEFAULTS = [("X-Process", "p/1"), ("Connection", "close")]


@pytest.fixture(scope="module", params=["plain", "meaningful"])
def with_defaults(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    headers = DEFAULTS if request.param == "plain" else MEANINGFUL_DEFAULTS
    ours = serve(protocol_class("test/0", Connections(HttpLimits())), headers)
    theirs = serve("httptools", headers)
    yield next(ours), next(theirs), headers
    for server in (ours, theirs):
        next(server, None)


def raw_get(url: str, path: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _head(url: str, path: str) -> list[bytes]:
    lines = raw_get(url, path).split(b"\r\n\r\n")[0].split(b"\r\n")
    return [line for line in lines if not line.startswith(b"date: ")]


@pytest.mark.parametrize("path", ["/one", "/who/two", "/chunked", "/close"])
def test_reused_lines_are_byte_for_byte_what_uvicorn_writes(server: str, uvicorns: str, path: str) -> None:
    for _ in range(3):  # the first response checks the lines, the next ones reuse them
        assert _head(server, path) == _head(uvicorns, path)
    head = _head(server, path)
    assert b"content-type: text/plain" in head  # names lower-cased, as uvicorn does
    for name, value in SECURITY_HEADERS:
        assert name + b": " + value in head


def test_a_reused_name_with_another_value_is_written_with_that_value(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        answers = [client.get(f"/who/{who}").headers["x-served-by"] for who in ("a", "b", "a", "c")]
    assert answers == ["a", "b", "a", "c"]


def test_an_invalid_header_value_is_never_written_as_with_uvicorn(server: str, uvicorns: str) -> None:
    for url in (server, uvicorns):
        with httpx.Client(base_url=url) as client:
            client.get("/who/warm")  # the other lines are reused by now
            with pytest.raises(httpx.RemoteProtocolError):  # uvicorn drops the connection
                client.get("/bad")
            assert client.get("/who/next").text == "hello"


def test_connection_close_and_chunked_bodies_keep_their_meaning(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        closed = client.get("/close")
        assert closed.headers["connection"] == "Close" and closed.text == "hello"
        chunked = client.get("/chunked")
        assert chunked.headers["transfer-encoding"] == "chunked" and chunked.text == "hello"
        assert client.get("/who/after").text == "hello"  # a new connection after the close


@pytest.mark.parametrize("path", ["/one", "/chunked", "/close"])
def test_default_headers_are_written_as_uvicorn_writes_them(
    with_defaults: tuple[str, str, list[tuple[str, str]]], path: str
) -> None:
    ours, theirs, _ = with_defaults
    for _ in range(3):  # the first response renders the defaults, the next ones reuse them
        assert _head(ours, path) == _head(theirs, path)
    assert b"x-process: p/1" in _head(ours, path)


def test_a_meaningful_default_keeps_its_meaning(
    with_defaults: tuple[str, str, list[tuple[str, str]]],
) -> None:
    ours, _, headers = with_defaults
    with httpx.Client(base_url=ours) as client:
        answers = [client.get("/one") for _ in range(3)]
    closes = ("Connection", "close") in headers
    for answer in answers:
        assert answer.text == "hello"
        assert answer.headers.get_list("connection") == (["close"] if closes else [])  # said once
    assert _closed_after_one_answer(ours) is closes  # and acted on


def _closed_after_one_answer(url: str) -> bool:
    """Whether the server closes a keep-alive connection after answering one request."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=1) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            return False  # still open, a second later
        assert data.endswith(b"hello")
        return True


def test_default_lines_are_rendered_once_per_list_and_checked() -> None:
    defaults = [(b"date", b"Fri, 27 Nov 2026 10:00:00 GMT"), (b"X-Process", b"p/1")]
    lines = _default_lines(defaults)
    assert lines == b"date: Fri, 27 Nov 2026 10:00:00 GMT\r\nx-process: p/1\r\n"
    assert _default_lines(defaults) is lines  # the same list: not rendered again
    next_second = [(b"date", b"Fri, 27 Nov 2026 10:00:01 GMT"), (b"X-Process", b"p/1")]
    assert _default_lines(next_second) == b"date: Fri, 27 Nov 2026 10:00:01 GMT\r\nx-process: p/1\r\n"
    assert _default_lines([(b"date", b"x"), (b"Content-Length", b"3")]) is None  # left to each response
    with pytest.raises(RuntimeError, match="value"):
        _default_lines([(b"x-bad", b"line\r\nbreak")])
    with pytest.raises(RuntimeError, match="name"):
        _default_lines([(b"bad name", b"v")])
