"""`make demo` until the release rehearsal lands: ledger on an embedded Postgres, a few
transfers, then a graceful drain. Prints what it did and what it measured."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from cutover.local.ledger_process import LedgerProcess
from cutover.local.postgres import EmbeddedPostgres


async def _migrate(url: str) -> None:
    from ledger.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def main() -> int:
    print(
        "cutover demo: ledger on an embedded Postgres (the full blue/green rehearsal is `cutover rehearse`, to come)"
    )
    with tempfile.TemporaryDirectory(prefix="cutover-demo-") as tmp, EmbeddedPostgres(Path(tmp) / "pg") as pg:
        print(f"  postgres   {pg.url()}")
        asyncio.run(_migrate(pg.url()))
        ledger = LedgerProcess(
            {"DATABASE_URL": pg.url(), "COLOR": "blue", "DRAIN_SECONDS": "1", "LOG_FORMAT": "json"},
            Path(tmp) / "ledger.log",
        ).start()
        try:
            print(f"  ledger     {ledger.url} (pid {ledger.pid})")
            with httpx.Client(base_url=ledger.url, timeout=10) as http:
                a = http.post(
                    "/accounts", json={"name": "alice", "currency": "EUR", "opening_balance": 10_000}
                ).json()
                b = http.post(
                    "/accounts", json={"name": "bob", "currency": "EUR", "opening_balance": 0}
                ).json()
                for _ in range(20):
                    answer = http.post(
                        "/transfers",
                        json={"from_account_id": a["id"], "to_account_id": b["id"], "amount": 250},
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                    answer.raise_for_status()
                alice = http.get(f"/accounts/{a['id']}").json()["balance"]
                bob = http.get(f"/accounts/{b['id']}").json()["balance"]
                served_by = answer.headers["x-served-by"]
            print(
                f"  transfers  20 committed by {served_by}: alice {alice}, bob {bob}, total {alice + bob} (was 10000)"
            )
            started = time.monotonic()
            ledger.send_signal(signal.SIGTERM)
            code = ledger.wait(30)
            print(
                f"  drain      SIGTERM -> exit code {code} after {time.monotonic() - started:.1f}s (DRAIN_SECONDS=1)"
            )
        finally:
            ledger.kill()
    return 0 if alice + bob == 10_000 and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
