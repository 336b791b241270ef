"""ledger's database on this machine: migrate it, query it (rehearsal, tests, benchmarks)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg


async def _migrate(url: str) -> None:
    from ledger.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def migrate_database(url: str) -> None:
    """Apply ledger's migrations to the database at `url` (what `ledger migrate` does)."""
    asyncio.run(_migrate(url))


async def _query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on its own connection and return its rows."""
    return asyncio.run(_query(url, sql, *args))
