"""`ledger migrate`: versioned, idempotent, safe when two pods run it at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from ledger import migrate as migrations
from ledger.migrate import MigrationError, expected_version, load_migrations, migrate, schema_version


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


def test_migrations_are_numbered_without_gaps() -> None:
    found = load_migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert expected_version() == found[-1].version


def test_migrate_command_is_idempotent(empty_database: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database, "LOG_FORMAT": "text"}
    first = subprocess.run(
        [sys.executable, "-m", "ledger", "migrate"], env=env, capture_output=True, text=True
    )
    second = subprocess.run(
        [sys.executable, "-m", "ledger", "migrate"], env=env, capture_output=True, text=True
    )
    assert first.returncode == second.returncode == 0
    assert "applied migration 0001" in first.stdout
    assert "already up to date" in second.stdout

    async def version() -> int:
        conn = await _connect(empty_database)
        try:
            return await schema_version(conn)
        finally:
            await conn.close()

    assert asyncio.run(version()) == expected_version()


def test_concurrent_migrations_apply_each_version_once(empty_database: str) -> None:
    async def run() -> tuple[list[int], int]:
        conns = [await _connect(empty_database) for _ in range(4)]
        try:
            results = await asyncio.gather(*(migrate(c) for c in conns))
            rows = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
            return [len(applied) for applied in results], int(rows)
        finally:
            for c in conns:
                await c.close()

    applied_counts, rows = asyncio.run(run())
    assert sorted(applied_counts) == [0, 0, 0, expected_version()]
    assert rows == expected_version()


def test_an_edited_migration_is_refused(empty_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = load_migrations()

    async def run() -> None:
        conn = await _connect(empty_database)
        try:
            await migrate(conn)
            edited = [migrations.Migration(m.version, m.name, m.sql + "\n-- edited") for m in original]
            monkeypatch.setattr(migrations, "load_migrations", lambda: edited)
            with pytest.raises(MigrationError, match="changed after it was applied"):
                await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())


def test_balance_constraint_is_in_the_database(empty_database: str) -> None:
    async def run() -> None:
        conn = await _connect(empty_database)
        try:
            await migrate(conn)
            await conn.execute(
                "INSERT INTO accounts (id, name, currency, balance) VALUES (gen_random_uuid(), 'a', 'EUR', 5)"
            )
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("UPDATE accounts SET balance = balance - 6")
        finally:
            await conn.close()

    asyncio.run(run())
