"""Postgres hangs (a proxy stops forwarding) under load: requests are answered 503 with
Retry-After while it hangs, the service recovers on its own, and no acknowledged transfer
is lost. Real `ledger serve`, real Postgres behind a real TCP proxy."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.app.conftest import StartLedger, wait_until_async
from tests.app.freezable_proxy import FreezableProxy

pytestmark = pytest.mark.slow

FREEZE = 6.0  # seconds Postgres stops answering
WORKERS = 8
OPENING = 10**6


@dataclass
class Answer:
    sent: float
    at: float
    status: int
    retry_after: str | None


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # ids of transfers answered 201
    errors: list[str] = field(default_factory=list)


async def _worker(url: str, accounts: list[str], stop: asyncio.Event, load: Load, index: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        n = 0
        while not stop.is_set():
            n += 1
            key = uuid.uuid4().hex
            while not stop.is_set():  # a well-behaved client: retry a 503 with the same key
                sent = time.monotonic()
                try:
                    if (n + index) % 2:
                        answer = await http.get(f"/accounts/{accounts[n % 2]}")
                    else:
                        answer = await http.post(
                            "/transfers",
                            json={"from_account_id": accounts[0], "to_account_id": accounts[1], "amount": 1},
                            headers={"Idempotency-Key": key},
                        )
                except httpx.HTTPError as exc:
                    load.errors.append(type(exc).__name__)
                    break
                load.answers.append(
                    Answer(sent, time.monotonic(), answer.status_code, answer.headers.get("retry-after"))
                )
                if answer.status_code == 201:
                    load.acknowledged.append(answer.json()["id"])
                if answer.status_code != 503:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.01)


async def _transfers_since(load: Load, since: float, count: int) -> bool:
    """`count` transfers sent after `since` were acknowledged (201)."""
    return sum(a.status == 201 and a.sent > since for a in load.answers) >= count


async def _scenario(start: StartLedger, proxy: FreezableProxy, proxied_url: str) -> tuple[Load, float, float]:
    process = start(
        DATABASE_URL=proxied_url,
        DB_ACQUIRE_TIMEOUT_SECONDS="1",
        DB_COMMAND_TIMEOUT_SECONDS="1.5",
        DB_STATEMENT_TIMEOUT_SECONDS="1",
        DB_POOL_MAX="4",
    )
    async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
        accounts = []
        for name in ("from", "to"):
            answer = await http.post(
                "/accounts", json={"name": name, "currency": "EUR", "opening_balance": OPENING}
            )
            accounts.append(answer.json()["id"])
    load, stop = Load(), asyncio.Event()
    workers = [asyncio.create_task(_worker(process.url, accounts, stop, load, i)) for i in range(WORKERS)]
    await wait_until_async(  # the load is under way: transfers are being committed
        lambda: _transfers_since(load, 0.0, WORKERS), 30, "transfers before the freeze"
    )
    frozen_at = time.monotonic()
    proxy.freeze()
    await asyncio.sleep(FREEZE)  # the outage itself: its length is the scenario, not a wait
    proxy.thaw()
    thawed_at = time.monotonic()
    await asyncio.to_thread(process.wait_for_status, "/health/ready", 200, 30)
    ready_at = time.monotonic()
    await wait_until_async(  # traffic after recovery
        lambda: _transfers_since(load, ready_at, WORKERS), 30, "transfers after recovery"
    )
    stop.set()
    await asyncio.gather(*workers)
    return load, frozen_at, thawed_at


async def _persisted(database_url: str) -> tuple[set[str], int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        ids = {str(row["id"]) for row in await conn.fetch("SELECT id FROM transfers")}
        total = await conn.fetchval("SELECT sum(balance) FROM accounts")
        accounts = await conn.fetchval("SELECT count(*) FROM accounts")
        return ids, int(total), int(accounts)
    finally:
        await conn.close()


def test_a_hung_database_gets_503_with_retry_after_and_recovers(
    start_ledger: StartLedger, database_url: str
) -> None:
    target = urlsplit(database_url)
    assert target.hostname and target.port
    proxy = FreezableProxy(target.hostname, target.port).start()
    try:
        proxied = database_url.replace(f"@{target.hostname}:{target.port}/", f"@127.0.0.1:{proxy.port}/")
        load, frozen_at, thawed_at = asyncio.run(_scenario(start_ledger, proxy, proxied))
    finally:
        proxy.stop()

    statuses = {a.status for a in load.answers}
    assert statuses <= {200, 201, 503}, statuses
    assert load.errors == [], load.errors[:5]
    during = [a for a in load.answers if frozen_at < a.at < thawed_at]
    unavailable = [a for a in during if a.status == 503]
    # Answered while Postgres still hung, not when it came back.
    assert len(unavailable) >= WORKERS, [(round(a.at - frozen_at, 2), a.status) for a in during]
    assert all(a.retry_after for a in unavailable)
    assert any(a.status == 201 for a in load.answers if a.at > thawed_at), "no transfer after recovery"

    persisted, total, accounts = asyncio.run(_persisted(database_url))
    assert set(load.acknowledged) <= persisted, "an acknowledged transfer is missing"
    assert len(load.acknowledged) == len(set(load.acknowledged))
    assert (accounts, total) == (2, 2 * OPENING), "money was created or destroyed"
    print(
        f"answers {len(load.answers)}, during the freeze {len(during)} "
        f"(503: {len(unavailable)}, slowest {max(a.at - a.sent for a in unavailable):.1f} s), "
        f"first 503 {min(a.at for a in unavailable) - frozen_at:.1f} s into the freeze, acknowledged {len(load.acknowledged)}, persisted {len(persisted)}"
    )


def test_a_statement_past_the_statement_timeout_gets_503(
    start_ledger: StartLedger, database_url: str
) -> None:
    process = start_ledger(DB_STATEMENT_TIMEOUT_SECONDS="1", DB_COMMAND_TIMEOUT_SECONDS="10")

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
            ids = []
            for name in ("a", "b"):
                answer = await http.post(
                    "/accounts", json={"name": name, "currency": "EUR", "opening_balance": 5}
                )
                ids.append(answer.json()["id"])
            blocker = await asyncpg.connect(database_url)  # holds a row lock past the timeout
            try:
                async with blocker.transaction():
                    await blocker.execute(
                        "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", uuid.UUID(ids[0])
                    )
                    answer = await http.post(
                        "/transfers",
                        json={"from_account_id": ids[0], "to_account_id": ids[1], "amount": 1},
                        headers={"Idempotency-Key": "locked"},
                    )
            finally:
                await blocker.close()
            return answer

    answer = asyncio.run(scenario())
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "database_timeout"
    assert answer.headers["retry-after"] == "1"
    persisted, total, _ = asyncio.run(_persisted(database_url))
    assert (persisted, total) == (set(), 10)
