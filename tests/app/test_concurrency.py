"""Many clients moving money over a few accounts at once: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import httpx

from tests.app.conftest import StartLedger, open_account

ACCOUNTS = 5
TRANSFERS = 400
CLIENTS = 40


async def _run_transfers(url: str, accounts: list[str]) -> tuple[dict[str, dict[str, object]], int]:
    """Fire TRANSFERS transfers from CLIENTS clients; return acknowledged ones by key."""
    rng = random.Random(7)
    plan = []
    for _ in range(TRANSFERS):
        source, target = rng.sample(accounts, 2)
        plan.append((uuid.uuid4().hex, source, target, rng.randint(1, 400)))
    queue: asyncio.Queue[tuple[str, str, str, int]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    acknowledged: dict[str, dict[str, object]] = {}
    refused = 0

    async def client() -> None:
        nonlocal refused
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while not queue.empty():
                key, source, target, amount = queue.get_nowait()
                answer = await http.post(
                    "/transfers",
                    json={"from_account_id": source, "to_account_id": target, "amount": amount},
                    headers={"Idempotency-Key": key},
                )
                if answer.status_code == 201:
                    acknowledged[key] = answer.json()
                else:
                    assert answer.status_code == 422, answer.text
                    assert answer.json()["error"]["code"] == "insufficient_funds"
                    refused += 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return acknowledged, refused


def test_concurrent_transfers_conserve_money_and_log_each_once(
    start_ledger: StartLedger, database_url: str
) -> None:
    process = start_ledger(DB_POOL_MAX="20")
    with httpx.Client(base_url=process.url) as http:
        accounts = [open_account(http, 2_000) for _ in range(ACCOUNTS)]

    acknowledged, refused = asyncio.run(_run_transfers(process.url, accounts))

    async def read_back() -> tuple[int, list[asyncpg.Record]]:
        conn = await asyncpg.connect(database_url)
        try:
            total = await conn.fetchval("SELECT sum(balance) FROM accounts")
            rows = await conn.fetch("SELECT id, idempotency_key FROM transfers")
            return int(total), rows
        finally:
            await conn.close()

    total, rows = asyncio.run(read_back())
    assert len(acknowledged) + refused == TRANSFERS
    assert len(acknowledged) > TRANSFERS // 2  # the test really exercised contention
    assert total == ACCOUNTS * 2_000
    logged = {row["idempotency_key"]: str(row["id"]) for row in rows}
    assert len(rows) == len(logged) == len(acknowledged)
    assert {key: body["id"] for key, body in acknowledged.items()} == logged
    assert "deadlock" not in process.log_tail(10_000).lower()
