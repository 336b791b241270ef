"""SIGTERM under load: readiness drops at once, nothing in the drain window fails,
a slow in-flight request finishes after the listener closed, and the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.app.conftest import StartLedger, wait_until_async

DRAIN = 2.0
SHUTDOWN_TIMEOUT = 4.0
WORKERS = 8
MARGIN = 0.3  # stop sending this long before the drain window ends (probe tick granularity)


@dataclass
class Outcome:
    sent_at: float
    status: int | None
    error: str = ""


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    ready_during_drain: list[int] = field(default_factory=list)
    socket_closes: list[tuple[int | None, float]] = field(default_factory=list)


async def _subscriber(url: str, load: Load) -> None:
    """A websocket that reads until the server closes it; records the code and when."""
    async with ws_connect(url.replace("http://", "ws://") + "/ws/transfers") as ws:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
        load.socket_closes.append((ws.close_code, time.monotonic()))


async def _worker(url: str, accounts: list[str], stop_at: list[float], load: Load, index: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        n = 0
        while time.monotonic() < stop_at[0]:
            n += 1
            sent = time.monotonic()
            try:
                if n % 2:
                    answer = await http.get(f"/accounts/{accounts[index % len(accounts)]}")
                else:
                    answer = await http.post(
                        "/transfers",
                        json={"from_account_id": accounts[0], "to_account_id": accounts[1], "amount": 1},
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                load.outcomes.append(Outcome(sent, answer.status_code))
            except httpx.HTTPError as exc:
                load.outcomes.append(Outcome(sent, None, type(exc).__name__))
            await asyncio.sleep(0.005)


async def _waiting_on_a_lock(blocker: asyncpg.Connection) -> bool:
    """A backend waits on a lock `blocker` holds: the slow transfer reached the row lock."""
    waiting = await blocker.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
    )
    return bool(waiting)


async def _metric_is(http: httpx.AsyncClient, sample: str) -> bool:
    return sample in (await http.get("/metrics")).text.splitlines()


async def _listener_closed(port: int) -> bool:
    """A new TCP connection to `port` is refused."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def _scenario(start: StartLedger, database_url: str) -> tuple[Load, float, float, int, httpx.Response]:
    process = start(DRAIN_SECONDS=str(DRAIN), SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT))
    async with httpx.AsyncClient(base_url=process.url, timeout=30) as http:
        accounts = []
        for name in ("busy", "other", "locked", "sink"):
            answer = await http.post(
                "/accounts", json={"name": name, "currency": "EUR", "opening_balance": 10**6}
            )
            accounts.append(answer.json()["id"])
        busy, other, locked, sink = accounts

        # Hold a row lock so that a transfer touching `locked` stays in flight.
        blocker = await asyncpg.connect(database_url)
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", uuid.UUID(locked))
        slow = asyncio.create_task(
            http.post(
                "/transfers",
                json={"from_account_id": locked, "to_account_id": sink, "amount": 5},
                headers={"Idempotency-Key": "slow-one"},
            )
        )

        load = Load()
        stop_at = [float("inf")]
        workers = [
            asyncio.create_task(_worker(process.url, [busy, other], stop_at, load, i)) for i in range(WORKERS)
        ]
        sockets = [asyncio.create_task(_subscriber(process.url, load)) for _ in range(3)]
        await wait_until_async(
            lambda: _waiting_on_a_lock(blocker), 10, "the slow transfer waits on the row lock"
        )
        await wait_until_async(
            lambda: _metric_is(http, "ledger_websockets_open 3.0"), 10, "3 websockets open"
        )
        assert not slow.done(), "the slow request should be blocked on the row lock"
        assert not any(s.done() for s in sockets), "websockets should be open before SIGTERM"

        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stop_at[0] = sigterm_at + DRAIN - MARGIN
        async with httpx.AsyncClient(base_url=process.url, timeout=5) as probe:
            await wait_until_async(lambda: _metric_is(probe, "ledger_draining 1.0"), 10, "SIGTERM handled")
            while time.monotonic() < stop_at[0]:
                load.ready_during_drain.append((await probe.get("/health/ready")).status_code)
                await asyncio.sleep(0.1)
        await asyncio.gather(*workers, *sockets)

        await wait_until_async(
            lambda: _listener_closed(process.port), DRAIN + 10, "the listener closed at the end of the window"
        )
        assert not slow.done(), "the slow request must still be in flight after the listener closed"
        await holding.rollback()
        await blocker.close()
        slow_answer = await slow

    exit_code = await asyncio.to_thread(process.wait, DRAIN + SHUTDOWN_TIMEOUT + 5)
    exited_after = time.monotonic() - sigterm_at
    return load, sigterm_at, exited_after, exit_code, slow_answer


def test_sigterm_drains_without_failing_a_request(start_ledger: StartLedger, database_url: str) -> None:
    load, sigterm_at, exited_after, exit_code, slow_answer = asyncio.run(
        _scenario(start_ledger, database_url)
    )

    in_window = [o for o in load.outcomes if o.sent_at >= sigterm_at]
    assert len(in_window) > 50, f"too little load in the drain window: {len(in_window)}"
    failures = [o for o in load.outcomes if o.status is None or o.status >= 300]
    assert failures == [], failures[:5]

    assert load.ready_during_drain and set(load.ready_during_drain) == {503}
    # Open websockets were told to go away (1001) inside the drain window.
    assert [code for code, _ in load.socket_closes] == [1001, 1001, 1001]
    assert all(sigterm_at < at < sigterm_at + DRAIN for _, at in load.socket_closes)
    assert slow_answer.status_code == 201, slow_answer.text
    assert exit_code == 0
    assert exited_after <= DRAIN + SHUTDOWN_TIMEOUT + 1, exited_after


def _wait_until_draining(url: str) -> None:
    """Poll /metrics (deadline 10 s) until the process says it drains: the signal was handled."""
    deadline = time.monotonic() + 10
    while "ledger_draining 1.0" not in httpx.get(url + "/metrics", timeout=5).text:
        assert time.monotonic() < deadline, "SIGTERM not handled within 10 s"
        time.sleep(0.02)


def test_draining_responses_ask_clients_to_reconnect(start_ledger: StartLedger) -> None:
    process = start_ledger(DRAIN_SECONDS="3")
    with httpx.Client(base_url=process.url) as http:
        assert "connection" not in http.get("/health/live").headers
        process.send_signal(signal.SIGTERM)
        _wait_until_draining(process.url)
        answer = http.get("/health/live")
        assert answer.status_code == 200
        assert answer.headers["connection"] == "close"
        assert http.get("/metrics").text.count("ledger_draining 1.0") == 1


def test_second_signal_exits_at_once(start_ledger: StartLedger) -> None:
    process = start_ledger(DRAIN_SECONDS="30")
    process.send_signal(signal.SIGTERM)
    _wait_until_draining(process.url)  # the first signal is handled: the next one is the second
    assert process.running()
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=5)
    assert time.monotonic() - started < 2
    assert code == 128 + signal.SIGINT
