"""POST /transfers through ledger vs pgbench running the same transaction on the same Postgres."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.harness import BenchError, Server, median, wrk
from cutover.local.postgres import postgres_bin

ACCOUNTS = 1000
CLIENTS = 16
SECONDS = 8

# The transaction ledger runs for a transfer, with the same statements and round trips:
# lock both rows in id order, debit and credit in one UPDATE, write the log row.
PGBENCH_SCRIPT = """
\\set a random(1, {accounts})
\\set b (:a % {accounts}) + 1
BEGIN;
SELECT id, currency, balance FROM accounts WHERE id IN (SELECT id FROM bench_accounts WHERE n IN (:a, :b)) ORDER BY id FOR NO KEY UPDATE;
UPDATE accounts SET balance = balance + CASE WHEN id = (SELECT id FROM bench_accounts WHERE n = :a) THEN -1 ELSE 1 END WHERE id IN (SELECT id FROM bench_accounts WHERE n IN (:a, :b));
INSERT INTO transfers (id, idempotency_key, request_hash, from_account_id, to_account_id, amount, currency) SELECT gen_random_uuid(), gen_random_uuid()::text, 'pgbench', (SELECT id FROM bench_accounts WHERE n = :a), (SELECT id FROM bench_accounts WHERE n = :b), 1, 'EUR';
END;
"""

WRK_SCRIPT = """
local ids = {{{ids}}}
local counter = 0
local thread_id = 0
function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local a = math.random(1, #ids)
  local b = a % #ids + 1
  wrk.headers["Idempotency-Key"] = "wrk-" .. tostring(tid) .. "-" .. tostring(counter) .. "-" .. tostring(math.random(1, 1e9))
  local body = '{{"from_account_id":"' .. ids[a] .. '","to_account_id":"' .. ids[b] .. '","amount":1}}'
  return wrk.format(nil, "/transfers", nil, body)
end
"""


ROUNDS = 3  # interleaved pairs (pgbench, then ledger): the median round's ratio is the result


@dataclass(frozen=True)
class Result:
    ledger_tps: float  # medians of the rounds
    pgbench_tps: float
    round_ratios: tuple[float, ...]  # ledger / pgbench, each round measured back to back

    @property
    def ratio(self) -> float:
        return median(list(self.round_ratios))


async def _seed(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        ids = [uuid.uuid4() for _ in range(ACCOUNTS)]
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_accounts (n int PRIMARY KEY, id uuid NOT NULL)")
        await conn.executemany(
            "INSERT INTO accounts (id, name, currency, balance) VALUES ($1, 'bench', 'EUR', 1000000000)",
            [(i,) for i in ids],
        )
        await conn.executemany("INSERT INTO bench_accounts VALUES ($1, $2)", list(enumerate(ids, start=1)))
        return [str(i) for i in ids]
    finally:
        await conn.close()


def _pgbench(database_url: str, workdir: Path) -> float:
    script = workdir / "transfer.sql"
    script.write_text(PGBENCH_SCRIPT.format(accounts=ACCOUNTS))
    output = subprocess.run(
        [str(postgres_bin() / "pgbench"), "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS),
         "-M", "prepared", "-f", str(script), database_url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"tps = ([\d.]+)", output)
    if match is None:
        raise BenchError(f"pgbench printed no tps:\n{output}")
    return float(match[1])


def run(database_url: str) -> Result:
    ids = asyncio.run(_seed(database_url))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        script = workdir / "transfers.lua"
        script.write_text(WRK_SCRIPT.format(ids=",".join(f'"{i}"' for i in ids)))
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "HOST": "127.0.0.1",
            "DB_POOL_MAX": str(CLIENTS),
            "DRAIN_SECONDS": "0",
            "LOG_LEVEL": "WARNING",
        }
        server = Server([sys.executable, "-m", "ledger", "serve"], env).wait_ready("/health/ready")
        pgbench_rates: list[float] = []
        ledger_rates: list[float] = []
        try:
            wrk(server.url, seconds=1, connections=CLIENTS, threads=2, script=script)  # warm-up
            for _ in range(ROUNDS):  # the server idles while pgbench runs: no contention
                pgbench_rates.append(_pgbench(database_url, workdir))
                ledger_rates.append(
                    wrk(server.url, seconds=SECONDS, connections=CLIENTS, threads=2, script=script)
                )
        finally:
            server.stop()
    ratios = tuple(ledger / pg for ledger, pg in zip(ledger_rates, pgbench_rates, strict=True))
    return Result(median(ledger_rates), median(pgbench_rates), ratios)
