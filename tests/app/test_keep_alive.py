"""Keep-alive outlives the load balancer's idle timeout (a real `ledger serve` on 127.0.0.1).

The ALB keeps an idle connection to a target for 60 s and reuses it; a target that closed
it first (uvicorn's default: 5 s) makes the ALB answer 502. So an idle keep-alive
connection must live HTTP_KEEP_ALIVE_SECONDS (default 75), and neither uvicorn nor
ledger's own header timeout may close it earlier. The header timeout still cuts a client
that starts a request and never finishes its headers, counted from its first byte."""

from __future__ import annotations

import socket
import time

import pytest

from ledger.config import Settings
from tests.app.conftest import StartLedger

pytestmark = pytest.mark.slow

REQUEST = b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n"


def _response(sock: socket.socket) -> bytes:
    """One whole response (headers and content-length body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server writes until it closes the connection."""
    sock.settimeout(within)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_the_default_keep_alive_outlives_the_alb_idle_timeout() -> None:
    assert Settings.from_env({"DATABASE_URL": "postgresql://u:p@db/x"}).http_keep_alive_seconds == 75.0 > 60


def test_an_idle_keep_alive_connection_lives_its_keep_alive_not_the_header_timeout(
    start_ledger: StartLedger,
) -> None:
    # Header timeout 1 s, keep-alive 3 s: before, the idle connection was cut (408) after
    # 1 s by the header timeout, or after uvicorn's fixed 5 s.
    process = start_ledger(HTTP_KEEP_ALIVE_SECONDS="3", HTTP_HEADER_TIMEOUT_SECONDS="1")
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(2)  # idle: longer than the header timeout, shorter than keep-alive
        sock.sendall(REQUEST)
        head = _response(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"connection: close" not in head.lower()
        idle_from = time.monotonic()
        closing = _until_closed(sock, within=15)
        idle = time.monotonic() - idle_from
    assert closing == b""  # a quiet close at keep-alive's end, not a 408
    assert idle >= 2.5, f"closed after {idle:.1f}s idle, before its 3 s keep-alive"


def test_a_slow_header_on_a_kept_alive_connection_is_still_cut_at_the_header_timeout(
    start_ledger: StartLedger,
) -> None:
    process = start_ledger(HTTP_KEEP_ALIVE_SECONDS="30", HTTP_HEADER_TIMEOUT_SECONDS="1")
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # idle past the header timeout: still open
        sock.sendall(b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: ")
        answer = _until_closed(sock, within=15)
    assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer, answer[:200]


def test_a_silent_new_connection_is_still_cut_at_the_header_timeout(start_ledger: StartLedger) -> None:
    process = start_ledger(HTTP_KEEP_ALIVE_SECONDS="30", HTTP_HEADER_TIMEOUT_SECONDS="1")
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        answer = _until_closed(sock, within=15)
    assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer, answer[:200]


def test_the_start_of_a_request_sent_with_the_previous_one_is_cut_at_the_header_timeout(
    start_ledger: StartLedger,
) -> None:
    """The next request's first bytes in the same packet as a complete request: not an idle
    keep-alive connection. Before, it was taken for one and held for the whole keep-alive
    (a slowloris trick worth 75 s per connection instead of the 10 s header timeout)."""
    process = start_ledger(HTTP_KEEP_ALIVE_SECONDS="60", HTTP_HEADER_TIMEOUT_SECONDS="1")
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        sock.sendall(REQUEST + b"GET /health/li")
        answer = _until_closed(sock, within=15)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"HTTP/1.1 408" in answer and b"header_timeout" in answer, answer[-300:]
