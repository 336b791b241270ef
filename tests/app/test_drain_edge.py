"""The end of the drain window under load: a request the server received before its listener
closed is answered, or refused cleanly (a response with `connection: close`) - never dropped
without an answer. Real `ledger serve`, 16 clients sending through the end of the window and
past the listener close.

A connection the kernel accepted but the process did not yet would be reset by the close.
The gap between the last accept and the close is short unless the process is kept off the
CPU there, so the scenario also runs with the process stalled in that gap (a fault injected
through tests/app/stalled_close): every connection attempt in it meets the close."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import StartLedger, wait_until, wait_until_async

pytestmark = pytest.mark.slow

CLIENTS = 16
DRAIN = 3.0
# The clients keep sending this long past the end of the window: through the listener close
# (a tick after the window), the refusals of connections with no request under way and the
# pool's close, to the exit.
HORIZON = 2.5
CLOSE_STALL = 0.2  # the stall before the listener close, in the stalled runs
STALLED_CLOSE = Path(__file__).parent / "stalled_close"


async def _client(url: str, account: str, stop_at: list[float], outcomes: Counter[str]) -> None:
    # No retries: a dropped request shows as a read or protocol error.
    async with httpx.AsyncClient(
        base_url=url, timeout=10, transport=httpx.AsyncHTTPTransport(retries=0)
    ) as http:
        n = 0
        while time.monotonic() < stop_at[0]:
            n += 1
            try:
                if n % 2:
                    answer = await http.get(f"/accounts/{account}")
                else:
                    answer = await http.post(
                        "/accounts",
                        json={"name": uuid.uuid4().hex, "currency": "EUR"},
                    )
                if answer.status_code == 503:  # refused before it was read: clean, if it says so
                    assert answer.headers["connection"] == "close", answer.headers
                    assert answer.json()["error"]["code"] == "shutting_down"
                outcomes[f"status {answer.status_code}"] += 1
            except httpx.ConnectError:
                outcomes["refused at connect"] += 1  # the listener is closed: clean
                await asyncio.sleep(0.05)
            except httpx.HTTPError as exc:
                outcomes[f"dropped: {type(exc).__name__}"] += 1


def _draining(url: str) -> bool:
    return "ledger_draining 1.0" in httpx.get(url + "/metrics", timeout=5).text.splitlines()


async def _scenario(start: StartLedger, close_stall: float) -> Counter[str]:
    stalled = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(STALLED_CLOSE), os.environ.get("PYTHONPATH")])),
        "LEDGER_TEST_CLOSE_STALL": str(close_stall),
    }
    process = start(
        DRAIN_SECONDS=str(DRAIN), SHUTDOWN_TIMEOUT_SECONDS="5", **(stalled if close_stall else {})
    )
    async with httpx.AsyncClient(base_url=process.url) as http:
        account = (await http.post("/accounts", json={"name": "a", "currency": "EUR"})).json()["id"]
    outcomes: Counter[str] = Counter()
    stop_at = [float("inf")]  # set once SIGTERM is sent
    clients = [asyncio.create_task(_client(process.url, account, stop_at, outcomes)) for _ in range(CLIENTS)]
    await wait_until_async(  # the load is flowing: as many answers as clients so far
        lambda: _answered(outcomes, CLIENTS), 10, f"{CLIENTS} answers before SIGTERM"
    )
    process.send_signal(signal.SIGTERM)
    stop_at[0] = time.monotonic() + DRAIN + HORIZON
    await asyncio.gather(*clients)
    assert await asyncio.to_thread(process.wait, 15) == 0
    return outcomes


async def _answered(outcomes: Counter[str], count: int) -> bool:
    return sum(v for k, v in outcomes.items() if k.startswith("status")) >= count


@pytest.mark.parametrize(
    ("close_stall", "run"), [(0.0, 0), (0.0, 1), (0.0, 2), (CLOSE_STALL, 0), (CLOSE_STALL, 1)]
)
def test_the_end_of_the_drain_window_drops_no_request(
    start_ledger: StartLedger, close_stall: float, run: int
) -> None:
    outcomes = asyncio.run(_scenario(start_ledger, close_stall))
    print(dict(outcomes))
    dropped = {k: v for k, v in outcomes.items() if k.startswith("dropped")}
    assert dropped == {}, dict(outcomes)
    # Served through the window, then refused at connect once the listener closed.
    assert outcomes["status 200"] > CLIENTS and outcomes["refused at connect"] > 0, dict(outcomes)


def test_pipelined_requests_during_the_drain_window_are_all_answered(start_ledger: StartLedger) -> None:
    process = start_ledger(DRAIN_SECONDS=str(DRAIN), SHUTDOWN_TIMEOUT_SECONDS="5")
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        process.send_signal(signal.SIGTERM)
        # Inside the drain window: still serving, with `connection: close`.
        wait_until(lambda: _draining(process.url), 10, "SIGTERM handled (ledger_draining 1.0)")
        sock.sendall(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n" * 3)
        raw = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                raw += chunk
    responses = raw.split(b"HTTP/1.1 ")[1:]
    assert [r[:3] for r in responses] == [b"200"] * 3, raw
    assert b"connection: close" in responses[-1]
    assert all(b"connection: close" not in r for r in responses[:-1]), raw  # it said close, then answered
    assert process.wait(15) == 0
