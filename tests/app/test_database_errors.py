"""Only the database's own failures are "database down": 503 and a pool reset. Any other
error in a handler, an OSError included, is a 500 that leaves the pool alone."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cutover.local.database import migrate_database
from cutover.local.ledger_process import LedgerProcess
from cutover.local.postgres import EmbeddedPostgres
from ledger.app import create_app
from ledger.config import Settings
from ledger.errors import DatabaseTimeout, DatabaseUnavailable
from ledger.runtime import Runtime
from ledger.store import database_failure


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.InterfaceError("connection is closed"), DatabaseUnavailable),
        (asyncpg.InterfaceError("pool is closing"), DatabaseUnavailable),
        (
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            DatabaseUnavailable,
        ),
        (
            asyncpg.AdminShutdownError("terminating connection due to administrator command"),
            DatabaseUnavailable,
        ),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), DatabaseUnavailable),
        (TimeoutError(), DatabaseUnavailable),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), DatabaseTimeout),
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), type(None)),
        (asyncpg.UniqueViolationError("duplicate key"), type(None)),
        (ValueError("not the database"), type(None)),
    ],
)
def test_database_failure_names_only_outages_and_timeouts(error: BaseException, expected: type) -> None:
    assert type(database_failure(error)) is expected


async def _with_started_app(
    database_url: str, scenario: Callable[[httpx.AsyncClient, Runtime, list[int]], Awaitable[None]]
) -> None:
    """Run `scenario` against an in-process app on a real database; count pool resets."""
    settings = Settings.from_env({"DATABASE_URL": database_url, "INSTANCE_ID": "inproc"})
    runtime = Runtime(settings)
    resets: list[int] = []
    reset_pool = runtime.database_down

    def counting_reset() -> None:
        resets.append(1)
        reset_pool()

    runtime.database_down = counting_reset  # type: ignore[method-assign]
    app, _ = create_app(settings, runtime)
    runtime.start()
    try:
        for _ in range(300):  # the runtime connects in the background
            if runtime.started:
                break
            await asyncio.sleep(0.05)
        assert runtime.started, runtime.startup_failure
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
            await scenario(client, runtime, resets)
    finally:
        await runtime.stop()


def test_an_os_error_in_a_handler_is_a_500_and_leaves_the_pool_alone(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreadable(*_: Any) -> Any:
        raise OSError(errno.EIO, "Input/output error", "/etc/ledger/something")

    async def scenario(client: httpx.AsyncClient, runtime: Runtime, resets: list[int]) -> None:
        opened = await client.post("/accounts", json={"name": "a", "currency": "EUR"})
        assert opened.status_code == 201
        monkeypatch.setattr("ledger.routes.accounts.parse_body", unreadable)
        answer = await client.post("/accounts", json={"name": "b", "currency": "EUR"})
        assert answer.status_code == 500
        assert answer.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
        assert "retry-after" not in answer.headers
        assert resets == []
        # The pool still serves the next request.
        again = await client.get(f"/accounts/{opened.json()['id']}")
        assert again.status_code == 200

    asyncio.run(_with_started_app(database_url, scenario))


def test_a_driver_os_error_inside_a_store_call_is_database_unavailable(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same OSError, raised by the driver's socket during a query, is an outage."""

    async def scenario(client: httpx.AsyncClient, runtime: Runtime, resets: list[int]) -> None:
        opened = await client.post("/accounts", json={"name": "a", "currency": "EUR"})
        assert opened.status_code == 201

        async def broken_pipe(*_: Any, **__: Any) -> Any:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

        monkeypatch.setattr(asyncpg.connection.Connection, "fetchrow", broken_pipe)
        answer = await client.get(f"/accounts/{opened.json()['id']}")
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "database_unavailable"
        assert answer.headers["retry-after"] == "1"
        assert resets == [1]

    asyncio.run(_with_started_app(database_url, scenario))


def _log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_a_real_outage_is_database_unavailable_and_the_pool_reconnects(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    migrate_database(own_postgres.url())
    log = tmp_path / "ledger.log"
    process = LedgerProcess({"DATABASE_URL": own_postgres.url(), "LOG_FORMAT": "json"}, log).start()
    try:
        opened = httpx.post(process.url + "/accounts", json={"name": "a", "currency": "EUR"})
        assert opened.status_code == 201
        account = f"{process.url}/accounts/{opened.json()['id']}"
        own_postgres.stop("immediate")
        answer = httpx.get(account, timeout=10)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "database_unavailable"
        assert answer.headers["retry-after"] == "1"
        assert any(e.get("message") == "database unavailable" for e in _log_events(log))
        own_postgres.start()
        status = 0
        for _ in range(150):  # reconnect: the same process answers again once Postgres is back
            status = httpx.get(account, timeout=10).status_code
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, process.log_tail()
    finally:
        process.kill()
