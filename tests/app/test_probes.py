"""Probes against a real process whose real Postgres is stopped and started again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cutover.local.database import migrate_database
from cutover.local.ledger_process import LedgerProcess
from cutover.local.postgres import EmbeddedPostgres


def poll(url: str, until_status: int, timeout: float, watch_live: list[int]) -> float:
    """Poll /health/ready until it answers `until_status`; record /health/live on the way."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        watch_live.append(httpx.get(url + "/health/live", timeout=2).status_code)
        if httpx.get(url + "/health/ready", timeout=5).status_code == until_status:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"/health/ready did not answer {until_status} within {timeout}s")


def test_ready_follows_the_database_while_live_stays_up(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    migrate_database(own_postgres.url())
    process = LedgerProcess(
        {"DATABASE_URL": own_postgres.url(), "READY_CACHE_SECONDS": "0.2", "DB_PING_TIMEOUT_SECONDS": "0.5"},
        tmp_path / "ledger.log",
    ).start()
    live: list[int] = []
    try:
        assert httpx.get(process.url + "/health/ready").status_code == 200
        own_postgres.stop("immediate")
        poll(process.url, 503, timeout=10, watch_live=live)
        reason = httpx.get(process.url + "/health/ready").json()["reason"]
        assert reason.startswith("database"), reason
        assert httpx.get(process.url + "/health/startup").status_code == 200  # started once: stays started
        own_postgres.start()
        poll(process.url, 200, timeout=15, watch_live=live)
        metrics = httpx.get(process.url + "/metrics").text
        assert "ledger_ready 1.0" in metrics
    finally:
        process.kill()
    assert live and set(live) == {200}


def test_startup_waits_for_the_schema_and_then_turns_200(empty_database: str, tmp_path: Path) -> None:
    process = LedgerProcess({"DATABASE_URL": empty_database}, tmp_path / "ledger.log").start(
        wait_for="/health/live"
    )
    try:
        startup = httpx.get(process.url + "/health/startup")
        assert startup.status_code == 503
        assert "ledger migrate" in startup.json()["reason"]
        assert httpx.get(process.url + "/health/ready").status_code == 503
        account = httpx.post(process.url + "/accounts", json={"name": "x", "currency": "EUR"})
        assert account.status_code == 503 and account.json()["error"]["code"] == "unavailable"
        migrate_database(empty_database)
        process.wait_for_status("/health/startup", 200, timeout=15)
        process.wait_for_status("/health/ready", 200, timeout=5)
    finally:
        process.kill()


def test_live_answers_without_any_database(tmp_path: Path) -> None:
    process = LedgerProcess(
        {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}, tmp_path / "ledger.log"
    ).start(wait_for="/health/live")
    try:
        assert httpx.get(process.url + "/health/live").status_code == 200
        ready = httpx.get(process.url + "/health/ready")
        assert ready.status_code == 503
        assert "database unreachable" in ready.json()["reason"]
    finally:
        process.kill()
