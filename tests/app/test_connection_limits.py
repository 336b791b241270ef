"""Hostile connections against a real `ledger serve`: huge headers, endless chunked bodies,
requests that never finish arriving, and a slowloris past the file-descriptor limit.

Memory is measured as the server's peak RSS (VmHWM) before and after, with a bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import select
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cutover.local.ledger_process import LedgerProcess
from tests.app.conftest import StartLedger, open_account, wait_until

pytestmark = pytest.mark.slow

SENT_MB = 32  # what the client tries to push; the server must not hold it
BOUND_MB = 8  # most the server's peak RSS may grow meanwhile
CHUNK = b"a" * 65536


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


class _Reader(threading.Thread):
    """Reads a socket until the server closes it, while the main thread keeps sending."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock, self.data = sock, b""

    def run(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                self.data += chunk


def _push(port: int, head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    """Send `head` then chunks until the server stops us; returns what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = _Reader(sock)
        reader.start()
        with contextlib.suppress(OSError):
            sock.sendall(head)
            for chunk in body_chunks:
                sock.sendall(chunk)
        reader.join(10)
        return reader.data


def _status(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:100]
    return int(raw[9:12])


def test_headers_past_the_limit_get_431_and_memory_stays_flat(start_ledger: StartLedger) -> None:
    process = start_ledger()
    before = _peak_rss_mb(process.pid)
    head = b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: "
    raw = _push(process.port, head, iter([CHUNK] * (SENT_MB * 16) + [b"\r\n\r\n"]))
    growth = _peak_rss_mb(process.pid) - before
    print(f"peak RSS {before:.0f} MB -> +{growth:.1f} MB")
    assert _status(raw) == 431, raw[:200]
    assert b'"request_header_fields_too_large"' in raw and b"x-request-id: " in raw
    assert growth < BOUND_MB, f"peak RSS grew {growth:.1f} MB for {SENT_MB} MB of headers"
    assert httpx.get(process.url + "/health/live").status_code == 200


def test_a_chunked_body_stops_at_the_limit_with_413_and_memory_stays_flat(start_ledger: StartLedger) -> None:
    process = start_ledger()
    before = _peak_rss_mb(process.pid)
    head = (
        b"POST /transfers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"idempotency-key: chunked-1\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
    raw = _push(process.port, head, iter([chunk] * (SENT_MB * 16) + [b"0\r\n\r\n"]))
    growth = _peak_rss_mb(process.pid) - before
    print(f"peak RSS {before:.0f} MB -> +{growth:.1f} MB")
    assert _status(raw) == 413, raw[:200]
    assert b'"payload_too_large"' in raw and b"connection: close" in raw
    assert growth < BOUND_MB, f"peak RSS grew {growth:.1f} MB for a {SENT_MB} MB chunked body"


def _closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server wrote before closing, or None if it is still open after `within` s."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except OSError:
        pass
    return data


def test_requests_that_never_finish_arriving_are_closed_with_408(start_ledger: StartLedger) -> None:
    process = start_ledger(HTTP_HEADER_TIMEOUT_SECONDS="1", HTTP_BODY_TIMEOUT_SECONDS="1")
    silent = socket.create_connection(("127.0.0.1", process.port))
    half_header = socket.create_connection(("127.0.0.1", process.port))
    half_header.sendall(b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: ")
    short_body = socket.create_connection(("127.0.0.1", process.port))
    short_body.sendall(
        b"POST /accounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\n\r\n0123456789"
    )
    with silent, half_header, short_body:
        for sock, code in ((silent, b"header_timeout"), (half_header, b"header_timeout")):
            answer = _closed_by_server(sock, within=10)
            assert answer is not None, "the server left the connection open"
            assert _status(answer) == 408 and code in answer, answer[:200]
        answer = _closed_by_server(short_body, within=10)
        assert answer is not None, "the server left the connection open"
        assert _status(answer) == 408 and b"body_timeout" in answer, answer[:200]
    metrics = httpx.get(process.url + "/metrics").text
    assert 'ledger_http_connections_closed_total{reason="header_timeout"} 2.0' in metrics
    assert 'ledger_http_connections_closed_total{reason="body_timeout"} 1.0' in metrics


@contextlib.contextmanager
def _open_file_limit(soft: int) -> Iterator[None]:
    """Processes started inside inherit this soft limit on open files."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


SLOWLORIS = 1500  # connections, each a request that never finishes its headers
CHILD_FD_LIMIT = 512  # the server's open-file limit: the slowloris is three times that


def _open_gauge(process: LedgerProcess) -> float:
    families = text_string_to_metric_families(httpx.get(process.url + "/metrics", timeout=5).text)
    return next(f.samples[0].value for f in families if f.name == "ledger_http_connections_open")


def _all_connects_done(sockets: list[socket.socket]) -> Callable[[], bool]:
    """A predicate: every non-blocking connect has finished (writable, or refused/reset)."""
    poller = select.poll()
    for sock in sockets:
        poller.register(sock, select.POLLOUT)
    return lambda: len(poller.poll(0)) == len(sockets)


def _server_side(port: int) -> list[int]:
    """Unread bytes (rx queue) of each established TCP socket on the server's side of `port`.

    Zero on a socket means the server process has read everything its client sent."""
    unread = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state = int(fields[1].split(":")[1], 16), fields[3]
        if local_port == port and state == "01":  # ESTABLISHED
            unread.append(int(fields[4].split(":")[1], 16))
    return unread


def _all_read(port: int, connections: int) -> Callable[[], bool]:
    """A predicate: `connections` are established to `port` and the server read all they sent."""
    return lambda: _server_side(port) == [0] * connections


def test_health_answers_under_a_slowloris_past_the_descriptor_limit(start_ledger: StartLedger) -> None:
    with _open_file_limit(CHILD_FD_LIMIT):
        process = start_ledger(HTTP_MAX_CONNECTIONS="300")
    attackers: list[socket.socket] = []
    try:
        for _ in range(SLOWLORIS):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", process.port))
            attackers.append(sock)
        wait_until(_all_connects_done(attackers), 10, f"{SLOWLORIS} connects completed")
        for sock in attackers:
            with contextlib.suppress(OSError):
                sock.send(b"GET /health/live HTTP/1.1\r\nhost: x\r\n")
        wait_until(lambda: _open_gauge(process) >= 300, 10, "the server full: 300 connections open")
        for _ in range(5):
            answer = httpx.get(process.url + "/health/live", timeout=5)
            assert answer.status_code == 200
        assert _open_gauge(process) <= 300
        metrics = httpx.get(process.url + "/metrics", timeout=5).text
        assert 'ledger_http_connections_closed_total{reason="evicted"}' in metrics
    finally:
        for sock in attackers:
            sock.close()


def _locked_transfer(ids: list[str], key: str) -> bytes:
    """A POST /transfers that waits while another session holds a lock on the payer's row."""
    transfer = json.dumps({"from_account_id": ids[0], "to_account_id": ids[1], "amount": 1}).encode()
    return (
        b"POST /transfers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"idempotency-key: %s\r\ncontent-length: %d\r\n\r\n%s" % (key.encode(), len(transfer), transfer)
    )


@contextlib.asynccontextmanager
async def _row_locked(database_url: str, account_id: str) -> AsyncIterator[None]:
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", uuid.UUID(account_id))
            yield
    finally:
        await blocker.close()


def _only_the_scraper_open(process: LedgerProcess) -> bool:
    """/metrics is served (not refused from the health reserve) and counts only its own connection."""
    answer = httpx.get(process.url + "/metrics", timeout=5)
    return answer.status_code == 200 and "ledger_http_connections_open 1.0" in answer.text.splitlines()


def test_past_the_cap_with_every_connection_busy_health_answers_and_the_rest_gets_503(
    start_ledger: StartLedger, database_url: str
) -> None:
    process = start_ledger(HTTP_MAX_CONNECTIONS="2", DB_STATEMENT_TIMEOUT_SECONDS="5")
    ids = [open_account(httpx.Client(base_url=process.url), 5, name=name) for name in ("a", "b")]

    async def scenario() -> bytes | None:
        async with _row_locked(database_url, ids[0]):
            busy = [socket.create_connection(("127.0.0.1", process.port)) for _ in range(2)]
            try:
                for n, sock in enumerate(busy):  # the application is answering both: not evicted
                    sock.sendall(_locked_transfer(ids, f"busy-{n}"))
                # Each request read whole: in the application, so neither may be evicted.
                await asyncio.to_thread(
                    wait_until, _all_read(process.port, 2), 10, "the server read both busy requests"
                )
                for _ in range(3):  # the probes still get through, on the places kept for them
                    probe = await asyncio.to_thread(httpx.get, process.url + "/health/live", timeout=5)
                    assert probe.status_code == 200 and probe.headers["connection"] == "close"
                with socket.create_connection(("127.0.0.1", process.port)) as extra:
                    extra.sendall(b"GET /accounts/x HTTP/1.1\r\nhost: x\r\n\r\n")
                    return await asyncio.to_thread(_closed_by_server, extra, 4)
            finally:
                for sock in busy:
                    sock.close()

    answer = asyncio.run(scenario())
    assert answer is not None and _status(answer) == 503, answer
    assert b'"over_capacity"' in answer and b"connection: close" in answer
    wait_until(lambda: _only_the_scraper_open(process), 10, "the busy connections are released")
    assert httpx.get(process.url + "/health/live", timeout=5).status_code == 200


def test_at_the_cap_stalled_bodies_are_evicted_so_health_answers(start_ledger: StartLedger) -> None:
    process = start_ledger(HTTP_MAX_CONNECTIONS="50")
    stalled = [socket.create_connection(("127.0.0.1", process.port)) for _ in range(50)]
    try:
        for sock in stalled:  # headers read, a body that never arrives
            sock.sendall(
                b"POST /accounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b'content-length: 1000\r\n\r\n{"a"'
            )
        wait_until(_all_read(process.port, 50), 10, "the server read the 50 stalled requests' headers")
        for path in ("/health/live", "/health/ready", "/health/live", "/health/ready"):
            assert httpx.get(process.url + path, timeout=5).status_code == 200, path
        evicted = _closed_by_server(stalled[0], within=2)  # the most stalled went first, told why
        assert evicted is not None and _status(evicted) == 503, evicted
        assert b'"over_capacity"' in evicted and b"connection: close" in evicted
    finally:
        for sock in stalled:
            sock.close()


def _response(sock: socket.socket) -> bytes:
    """One whole response (with a content-length) read from a keep-alive connection."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"!"
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.startswith(b"content-length:")).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536) or b"!"
    return head + b"\r\n\r\n" + body


def _after_a_server_clock_tick() -> None:
    """Return once the server's clock has surely moved on from the moment this is called.

    The server stamps connections with uvloop's clock: CLOCK_MONOTONIC (time.monotonic's),
    in whole milliseconds, read coarsely (up to a millisecond behind). Past 3 ms from now, a
    stamp it takes is strictly greater than any it took before now."""
    now = time.monotonic()
    wait_until(lambda: time.monotonic() >= now + 0.003, 1, "the monotonic clock to advance", poll=0.001)


def test_eviction_takes_the_most_stalled_not_an_active_keep_alive_client(start_ledger: StartLedger) -> None:
    process = start_ledger(HTTP_MAX_CONNECTIONS="3")
    request = b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n"
    with contextlib.ExitStack() as stack:
        keep_alive = stack.enter_context(socket.create_connection(("127.0.0.1", process.port)))
        slow = stack.enter_context(socket.create_connection(("127.0.0.1", process.port)))
        slow.sendall(b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: ")  # stalled from now on
        wait_until(_all_read(process.port, 2), 10, "the server accepted both and read the slow one")
        _after_a_server_clock_tick()  # so keep-alive's answer is stamped strictly later than slow
        keep_alive.sendall(request)  # opened first, but active: it waited only since this answer
        assert _status(_response(keep_alive)) == 200
        other = stack.enter_context(socket.create_connection(("127.0.0.1", process.port)))
        other.sendall(request)
        assert _status(_response(other)) == 200
        wait_until(_all_read(process.port, 3), 10, "the server holds all three: at its cap")
        newcomer = stack.enter_context(socket.create_connection(("127.0.0.1", process.port)))
        newcomer.sendall(request)
        assert _status(_response(newcomer)) == 200
        evicted = _closed_by_server(slow, within=2)
        assert evicted is not None and _status(evicted) == 503, evicted  # the partial request is answered
        assert b"connection: close" in evicted
        keep_alive.sendall(request)
        assert _status(_response(keep_alive)) == 200


def _trailers(total_mb: int) -> Iterator[bytes]:
    line = b"x-trailer: " + b"t" * 1000 + b"\r\n"
    block = line * 64
    for _ in range(total_mb * 1024 * 1024 // len(block)):
        yield block
    yield b"\r\n"


def test_trailers_count_against_the_header_limit(start_ledger: StartLedger) -> None:
    process = start_ledger()
    before = _peak_rss_mb(process.pid)
    head = (
        b"POST /accounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    )
    raw = _push(process.port, head, _trailers(SENT_MB))
    growth = _peak_rss_mb(process.pid) - before
    print(f"peak RSS {before:.0f} MB -> +{growth:.1f} MB")
    assert _status(raw) == 431, raw[:200]
    assert b'"request_header_fields_too_large"' in raw and b"connection: close" in raw
    assert growth < BOUND_MB, f"peak RSS grew {growth:.1f} MB for {SENT_MB} MB of trailers"


def test_pipelined_headers_count_while_the_previous_request_runs(
    start_ledger: StartLedger, database_url: str
) -> None:
    process = start_ledger(DB_STATEMENT_TIMEOUT_SECONDS="2")
    ids = [open_account(httpx.Client(base_url=process.url), 5, name=name) for name in ("a", "b")]
    head = _locked_transfer(ids, "slow") + b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: "

    async def scenario() -> bytes:
        async with _row_locked(database_url, ids[0]):  # the transfer waits on this row lock
            chunks = iter([CHUNK] * (SENT_MB * 16) + [b"\r\n\r\n"])
            return await asyncio.to_thread(_push, process.port, head, chunks)

    before = _peak_rss_mb(process.pid)
    raw = asyncio.run(scenario())
    growth = _peak_rss_mb(process.pid) - before
    print(f"peak RSS {before:.0f} MB -> +{growth:.1f} MB")
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert _status(first) in (201, 503), raw[:300]  # the first request is answered first
    assert b"HTTP/1.1 431 " in rest and b'"request_header_fields_too_large"' in rest, raw[:600]
    assert growth < BOUND_MB, f"peak RSS grew {growth:.1f} MB for {SENT_MB} MB of pipelined headers"


@pytest.mark.parametrize("size_kb", [33, 180])
def test_a_header_past_the_limit_in_one_send_gets_431(start_ledger: StartLedger, size_kb: int) -> None:
    process = start_ledger()
    request = b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: " + b"b" * (size_kb * 1024) + b"\r\n\r\n"
    raw = _push(process.port, request, iter([]))
    assert _status(raw) == 431, raw[:200]
    just_fits = b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: " + b"b" * (30 * 1024) + b"\r\n\r\n"
    assert _status(_push(process.port, just_fits, iter([]))) == 200
