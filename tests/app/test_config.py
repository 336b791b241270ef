"""Configuration: every bad variable is refused at start with one line and exit code 2."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from ledger.config import ConfigError, Settings

GOOD = {"DATABASE_URL": "postgresql://u:secret-pw@db:5432/ledger"}

BAD_VALUES = [
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"DATABASE_URL": "mysql://u:secret-pw@db/x"}, "DATABASE_URL"),
    ({"PORT": "http"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"HOST": " "}, "HOST"),
    ({"COLOR": "purple"}, "COLOR"),
    ({"DRAIN_SECONDS": "-1"}, "DRAIN_SECONDS"),
    ({"DRAIN_SECONDS": "soon"}, "DRAIN_SECONDS"),
    ({"DRAIN_SECONDS": "nan"}, "DRAIN_SECONDS"),
    ({"SHUTDOWN_TIMEOUT_SECONDS": "1e9"}, "SHUTDOWN_TIMEOUT_SECONDS"),
    ({"CLUSTER_DISCOVERY": "gossip:all"}, "CLUSTER_DISCOVERY"),
    ({"CLUSTER_DISCOVERY": "static:host-without-port"}, "CLUSTER_DISCOVERY"),
    ({"CLUSTER_DISCOVERY": "dns:"}, "CLUSTER_DISCOVERY"),
    ({"RATE_LIMIT_PER_MINUTE": "-3"}, "RATE_LIMIT_PER_MINUTE"),
    ({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"}, "TRUSTED_PROXIES"),
    ({"CLUSTER_DNS_SERVER": "kube-dns:53"}, "CLUSTER_DNS_SERVER"),
    ({"CLUSTER_INTERVAL_SECONDS": "0"}, "CLUSTER_INTERVAL_SECONDS"),
    ({"WS_MAX_PER_CLIENT": "0"}, "WS_MAX_PER_CLIENT"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"DB_POOL_MIN": "5", "DB_POOL_MAX": "2"}, "DB_POOL_MAX"),
]


def test_defaults() -> None:
    settings = Settings.from_env(GOOD)
    assert (settings.host, settings.port, settings.color) == ("0.0.0.0", 8000, "blue")
    assert (settings.drain_seconds, settings.shutdown_timeout_seconds) == (5.0, 20.0)
    assert settings.discovery.mode == "none"
    assert settings.served_by == f"blue/{settings.instance_id}"
    assert "secret-pw" not in repr(settings)


def test_good_values_parse() -> None:
    settings = Settings.from_env(
        {
            **GOOD,
            "PORT": "9000",
            "COLOR": "GREEN",
            "DRAIN_SECONDS": "0.5",
            "CLUSTER_DISCOVERY": "static:10.0.0.1:8000, ledger-1.local:8000",
            "LOG_LEVEL": "debug",
            "INSTANCE_ID": "pod-a",
        }
    )
    assert (settings.port, settings.color, settings.drain_seconds) == (9000, "green", 0.5)
    assert settings.discovery.static_peers == ("10.0.0.1:8000", "ledger-1.local:8000")
    assert settings.log_level == "DEBUG"
    assert settings.served_by == "green/pod-a"
    dns = Settings.from_env(
        {**GOOD, "CLUSTER_DISCOVERY": "dns:ledger-blue-headless.ledger.svc.cluster.local"}
    )
    assert (dns.discovery.mode, dns.discovery.dns_name) == (
        "dns",
        "ledger-blue-headless.ledger.svc.cluster.local",
    )


@pytest.mark.parametrize(("override", "variable"), BAD_VALUES)
def test_bad_value_names_the_variable(override: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**GOOD, **override})
    message = str(error.value)
    assert message.startswith(variable)
    assert "\n" not in message
    assert "secret-pw" not in message


def _run_ledger(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORT", "COLOR")}
    return subprocess.run(
        [sys.executable, "-m", "ledger", command],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(("override", "variable"), BAD_VALUES[:6] + BAD_VALUES[-3:])
def test_serve_refuses_bad_config_with_one_line_and_exit_2(override: dict[str, str], variable: str) -> None:
    result = _run_ledger("serve", {**GOOD, **override})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ledger: {variable}"), result.stderr
    assert result.stdout == ""
    assert "secret-pw" not in result.stderr


def test_migrate_with_bad_config_changes_nothing(empty_database: str) -> None:
    result = _run_ledger("migrate", {"DATABASE_URL": empty_database, "LOG_LEVEL": "LOUD"})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("ledger: LOG_LEVEL")

    async def tables() -> list[str]:
        conn = await asyncpg.connect(empty_database)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return [row["tablename"] for row in rows]
        finally:
            await conn.close()

    assert asyncio.run(tables()) == []
