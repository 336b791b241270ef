"""`make bench`: every benchmark, each a ratio against a baseline measured in the same run."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import asyncpg

from bench import middleware_overhead, transfers_vs_pgbench
from cutover.local.postgres import EmbeddedPostgres
from ledger.migrate import migrate

RESULTS = Path(__file__).parent / "results" / "latest.json"


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pg") as postgres:
        url = postgres.create_database("bench")
        asyncio.run(_migrate(url))
        print(
            "1/2 /health/live: full middleware stack vs bare ASGI app (wrk, 64 connections) ...", flush=True
        )
        overhead = middleware_overhead.run(url)
        print(
            f"    ledger {overhead.ledger_rps:,.0f} req/s, bare {overhead.bare_rps:,.0f} req/s, "
            f"ratio {overhead.ratio:.2f}x (issue target >= 0.35x)",
            flush=True,
        )
        print("2/2 POST /transfers vs pgbench, same transaction, same Postgres (16 clients) ...", flush=True)
        transfers = transfers_vs_pgbench.run(url)
        print(
            f"    ledger {transfers.ledger_tps:,.0f} transfers/s, pgbench {transfers.pgbench_tps:,.0f} tps, "
            f"ratio {transfers.ratio:.2f}x",
            flush=True,
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "health_live_vs_bare_asgi": {
                    "ratio": round(overhead.ratio, 3),
                    "ledger_rps": overhead.ledger_rps,
                    "bare_rps": overhead.bare_rps,
                },
                "transfers_vs_pgbench": {
                    "ratio": round(transfers.ratio, 3),
                    "ledger_tps": transfers.ledger_tps,
                    "pgbench_tps": transfers.pgbench_tps,
                },
            },
            indent=2,
        )
    )
    print(
        f"results written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )


if __name__ == "__main__":
    main()
