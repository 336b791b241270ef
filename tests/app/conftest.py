"""Fixtures for ledger: migrated databases and real `ledger serve` processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cutover.local.database import migrate_database
from cutover.local.ledger_process import LedgerProcess
from cutover.local.postgres import EmbeddedPostgres

StartLedger = Callable[..., LedgerProcess]


@pytest.fixture
def database_url(empty_database: str) -> str:
    """A new database migrated to the current schema."""
    migrate_database(empty_database)
    return empty_database


@pytest.fixture(scope="module")
def module_database_url(postgres: EmbeddedPostgres) -> str:
    url = postgres.create_database(f"m_{uuid.uuid4().hex[:12]}")
    migrate_database(url)
    return url


def _starter(tmp_path: Path, database_url: str) -> Iterator[StartLedger]:
    started: list[LedgerProcess] = []

    def start(
        wait_for: str | None = "/health/ready",
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        **env: str,
    ) -> LedgerProcess:
        settings = {
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "json",
            "INSTANCE_ID": f"test-{len(started)}",
            **env,
        }
        process = LedgerProcess(settings, tmp_path / f"ledger-{len(started)}.log", port=port, host=host)
        started.append(process)
        return process.start(wait_for=wait_for)

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def start_ledger(tmp_path: Path, database_url: str) -> Iterator[StartLedger]:
    """Start real `ledger serve` processes on a fresh database; all are killed afterwards."""
    yield from _starter(tmp_path, database_url)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[httpx.Client]:
    """An HTTP client for one `ledger serve` shared by a test module."""
    for start in _starter(tmp_path_factory.mktemp("ledger"), module_database_url):
        process = start()
        with httpx.Client(base_url=process.url, timeout=10) as client:
            yield client


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A Postgres this test may stop: not the one the other tests share."""
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake static credentials; no profile, config file or metadata service."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE",
        "AWS_SECRET_ACCESS_KEY": "fake-secret",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def open_account(client: httpx.Client, balance: int, currency: str = "EUR", name: str = "acct") -> str:
    answer = client.post("/accounts", json={"name": name, "currency": currency, "opening_balance": balance})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    """Poll `predicate` until it holds; fail naming `what` if it does not within `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(poll)


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]], timeout: float, what: str, poll: float = 0.02
) -> None:
    """`wait_until` for a coroutine predicate, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(poll)
