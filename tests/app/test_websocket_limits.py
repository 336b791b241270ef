"""WS /ws/transfers against hostile clients on a real `ledger serve`: big inbound frames,
a handshake flood, and a subscriber that never reads."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cutover.local.ledger_process import LedgerProcess
from ledger.middleware.headers import SECURITY_HEADERS
from tests.app.conftest import StartLedger
from tests.app.test_connection_limits import _peak_rss_mb

pytestmark = pytest.mark.slow

SOCKETS, FRAME_MB, BOUND_MB = 5, 8, 8


def _ws_url(process: LedgerProcess) -> str:
    return process.url.replace("http://", "ws://") + "/ws/transfers"


def _samples(process: LedgerProcess, name: str) -> dict[str, float]:
    families = text_string_to_metric_families(httpx.get(process.url + "/metrics", timeout=5).text)
    family = next((f for f in families if f.name == name), None)
    if family is None:
        return {}
    return {",".join(s.labels.values()): s.value for s in family.samples if not s.name.endswith("_created")}


def test_big_inbound_frames_close_the_socket_and_memory_stays_flat(start_ledger: StartLedger) -> None:
    process = start_ledger()
    before = _peak_rss_mb(process.pid)

    async def send_big() -> int | None:
        async with ws_connect(_ws_url(process), max_size=None, close_timeout=1) as ws:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(ws.send(b"x" * (FRAME_MB * 1024 * 1024)), 10)
                await asyncio.wait_for(ws.recv(), 5)  # the server ignores what we send: it can only close
            return ws.close_code

    async def scenario() -> list[int | None]:
        return list(await asyncio.gather(*(send_big() for _ in range(SOCKETS))))

    codes = asyncio.run(scenario())
    growth = _peak_rss_mb(process.pid) - before
    print(f"peak RSS {before:.0f} MB -> +{growth:.1f} MB for {SOCKETS} x {FRAME_MB} MB frames")
    assert codes == [1009] * SOCKETS, codes  # message too big
    assert growth < BOUND_MB, f"peak RSS grew {growth:.1f} MB"


def test_handshakes_past_the_rate_get_429(start_ledger: StartLedger) -> None:
    process = start_ledger(WS_HANDSHAKES_PER_MINUTE="3")

    async def scenario() -> list[int]:
        statuses = []
        for _ in range(5):
            try:
                async with ws_connect(_ws_url(process)):
                    statuses.append(101)
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
                assert exc.response.headers["retry-after"]
                for name, value in SECURITY_HEADERS:  # each once, as on every answer
                    assert exc.response.headers.get_all(name.decode()) == [value.decode()]
                for header in ("x-request-id", "x-served-by"):
                    assert len(exc.response.headers.get_all(header)) == 1
        return statuses

    assert asyncio.run(scenario()) == [101, 101, 101, 429, 429]
    assert _samples(process, "ledger_websocket_closes")["rate_limited"] == 2


def _subscribe_without_reading(process: LedgerProcess) -> socket.socket:
    """A websocket handshake on a raw socket with a tiny receive buffer, then never a read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", process.port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /ws/transfers HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: " + key + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_subscriber_that_never_reads_is_closed_by_the_message_bound(
    start_ledger: StartLedger, database_url: str
) -> None:
    process = start_ledger()
    sock = _subscribe_without_reading(process)
    try:
        deadline = time.monotonic() + 5
        while _samples(process, "ledger_websockets_open").get("", 0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        async def flood() -> None:  # what committed transfers send the feed, 5,000 times
            conn = await asyncpg.connect(database_url)
            try:
                for batch in range(5):
                    await conn.execute(
                        "SELECT pg_notify('ledger_transfers', $1 || i::text || repeat('x', 1000)) "
                        "FROM generate_series(1, 1000) AS i",
                        str(batch),
                    )
            finally:
                await conn.close()

        asyncio.run(flood())
        # Well inside uvicorn's keepalive timeout (20 s ping + 20 s pong), which closed it before.
        deadline = time.monotonic() + 15
        while _samples(process, "ledger_websockets_open").get("", 0) > 0:
            assert time.monotonic() < deadline, "the slow subscriber is still open"
            time.sleep(0.1)
        assert _samples(process, "ledger_websocket_closes").get("too_slow") == 1
    finally:
        sock.close()


def _handshake(process: LedgerProcess) -> tuple[socket.socket, bytes]:
    """A raw websocket handshake: the socket and the server's whole answer head (and body)."""
    sock = socket.create_connection(("127.0.0.1", process.port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /ws/transfers HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: " + key + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                head += chunk
    return sock, head


def test_websockets_in_all_are_capped_so_descriptors_remain_for_http(start_ledger: StartLedger) -> None:
    process = start_ledger(WS_MAX_CONNECTIONS="20", WS_MAX_PER_CLIENT="1000", WS_HANDSHAKES_PER_MINUTE="0")
    sockets: list[socket.socket] = []
    answers: list[bytes] = []
    try:
        for _ in range(30):
            sock, head = _handshake(process)
            sockets.append(sock)
            answers.append(head)
        statuses = [int(head[9:12]) for head in answers]
        assert statuses == [101] * 20 + [503] * 10, statuses
        assert b'"over_capacity"' in answers[-1] and b"retry-after: " in answers[-1].lower()
        refusal = answers[-1].lower()
        for name, value in SECURITY_HEADERS:
            assert refusal.count(name + b": ") == 1 and name + b": " + value.lower() in refusal
        assert refusal.count(b"x-request-id: ") == 1 and refusal.count(b"x-served-by: blue/") == 1
        assert httpx.get(process.url + "/health/live", timeout=5).status_code == 200
        assert _samples(process, "ledger_websocket_closes")["over_capacity"] == 10
        assert _samples(process, "ledger_websockets_open")[""] == 20
    finally:
        for sock in sockets:
            sock.close()
    deadline = time.monotonic() + 5  # closed sockets free their places
    while _samples(process, "ledger_websockets_open").get("", 0) > 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sock, head = _handshake(process)
    sock.close()
    assert head.startswith(b"HTTP/1.1 101"), head


PING = b"\x89\xfd\x00\x00\x00\x00" + b"p" * 125  # a masked ping (all-zero mask), 125-byte payload


def test_a_ping_flood_from_a_client_that_never_reads_is_closed_and_memory_stays_flat(
    start_ledger: StartLedger,
) -> None:
    process = start_ledger()
    sock = _subscribe_without_reading(process)
    before = _peak_rss_mb(process.pid)
    sent, closed = 0, False
    sock.settimeout(10)
    try:
        while sent < 64 * 1024 * 1024:  # each ping asks for a pong the client never reads
            sock.sendall(PING * 512)
            sent += len(PING) * 512
    except OSError:
        closed = True  # the server closed the connection (or stopped reading: timeout)
    finally:
        sock.close()
    growth = _peak_rss_mb(process.pid) - before
    print(f"peak RSS {before:.0f} MB -> +{growth:.1f} MB after {sent / 2**20:.0f} MB of pings")
    assert closed, f"{sent / 2**20:.0f} MB of pings were all read"
    assert growth < BOUND_MB, f"peak RSS grew {growth:.1f} MB"
    assert _samples(process, "ledger_websockets_open").get("", 0) == 0 or _wait_closed(process)
    assert httpx.get(process.url + "/health/live", timeout=5).status_code == 200


def _wait_closed(process: LedgerProcess) -> bool:
    deadline = time.monotonic() + 5
    while _samples(process, "ledger_websockets_open").get("", 0) > 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
