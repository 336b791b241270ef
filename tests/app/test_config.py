"""Configuration: every bad variable is refused at start with one line and exit code 2."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import subprocess
import sys

import asyncpg
import pytest

from ledger.config import ConfigError, Discovery, Settings

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

# DATABASE_AUTH and the settings its modes need. NO_PASSWORD is the URL those modes take.
NO_PASSWORD = "postgresql://ledger_app@db:5432/ledger"
EXISTING_FILE = __file__
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1"
BAD_AUTH_VALUES = [
    ({"DATABASE_AUTH": "kerberos"}, "DATABASE_AUTH"),
    ({"DATABASE_AUTH": ""}, "DATABASE_AUTH"),
    # a password frozen into the URL is what breaks at the first rotation
    ({"DATABASE_AUTH": "password-file", "DATABASE_PASSWORD_FILE": EXISTING_FILE}, "DATABASE_URL"),
    ({"DATABASE_AUTH": "iam", "DATABASE_REGION": "eu-west-1"}, "DATABASE_URL"),
    (
        {
            "DATABASE_AUTH": "iam",
            "DATABASE_REGION": "eu-west-1",
            "DATABASE_URL": NO_PASSWORD + "?password=secret-pw",
        },
        "DATABASE_URL",
    ),
    ({"DATABASE_AUTH": "secrets-manager", "DATABASE_SECRET_ARN": ARN}, "DATABASE_URL"),
    ({"DATABASE_AUTH": "password-file", "DATABASE_URL": NO_PASSWORD}, "DATABASE_PASSWORD_FILE"),
    (
        {
            "DATABASE_AUTH": "password-file",
            "DATABASE_URL": NO_PASSWORD,
            "DATABASE_PASSWORD_FILE": "/no/such/file",
        },
        "DATABASE_PASSWORD_FILE",
    ),
    (
        {
            "DATABASE_AUTH": "password-file",
            "DATABASE_URL": NO_PASSWORD,
            "DATABASE_PASSWORD_FILE": "relative.txt",
        },
        "DATABASE_PASSWORD_FILE",
    ),
    (
        {
            "DATABASE_AUTH": "password-file",
            "DATABASE_URL": "postgresql://db:5432/ledger",
            "DATABASE_PASSWORD_FILE": EXISTING_FILE,
        },
        "DATABASE_URL",
    ),
    ({"DATABASE_AUTH": "iam", "DATABASE_URL": NO_PASSWORD}, "AWS_REGION"),
    ({"DATABASE_AUTH": "iam", "DATABASE_URL": NO_PASSWORD, "DATABASE_REGION": "Ireland"}, "DATABASE_REGION"),
    ({"DATABASE_AUTH": "iam", "DATABASE_URL": NO_PASSWORD, "AWS_REGION": "eu_west_1"}, "AWS_REGION"),
    (
        {
            "DATABASE_AUTH": "iam",
            "DATABASE_URL": "postgresql://ledger_app@db1,db2/ledger",
            "AWS_REGION": "eu-west-1",
        },
        "DATABASE_URL",
    ),
    (
        {"DATABASE_AUTH": "iam", "DATABASE_URL": "postgresql://db/ledger", "AWS_REGION": "eu-west-1"},
        "DATABASE_URL",
    ),
    ({"DATABASE_AUTH": "secrets-manager", "DATABASE_URL": NO_PASSWORD}, "DATABASE_SECRET_ARN"),
    (
        {"DATABASE_AUTH": "secrets-manager", "DATABASE_URL": NO_PASSWORD, "DATABASE_SECRET_ARN": "rds!db-1"},
        "DATABASE_SECRET_ARN",
    ),
    ({"DATABASE_AUTH_RETRY_SECONDS": "-1"}, "DATABASE_AUTH_RETRY_SECONDS"),
    ({"DATABASE_AUTH_RETRY_SECONDS": "forever"}, "DATABASE_AUTH_RETRY_SECONDS"),
    ({"DB_POOL_MAX_QUERIES": "0"}, "DB_POOL_MAX_QUERIES"),
    ({"DB_POOL_MAX_INACTIVE_SECONDS": "soon"}, "DB_POOL_MAX_INACTIVE_SECONDS"),
    ({"HTTP_KEEP_ALIVE_SECONDS": "0"}, "HTTP_KEEP_ALIVE_SECONDS"),
    ({"HTTP_KEEP_ALIVE_SECONDS": "5000"}, "HTTP_KEEP_ALIVE_SECONDS"),
    ({"HTTP_KEEP_ALIVE_SECONDS": "a minute"}, "HTTP_KEEP_ALIVE_SECONDS"),
]

# Values that used to slip through: each was accepted and failed later (or never).
SLIPPED_THROUGH = [
    ({"DATABASE_URL": "postgresql://u:secret-pw@db:54x2/ledger"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://u:secret-pw@db:99999/ledger"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://u:secret-pw@[::1/ledger"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://u:secret-pw@[::1]:5432,db2:x/ledger"}, "DATABASE_URL"),
    ({"INSTANCE_ID": "pod\r\nset-cookie: a=b"}, "INSTANCE_ID"),
    ({"INSTANCE_ID": "pod\nb"}, "INSTANCE_ID"),
    ({"HOST": "no-such-host.invalid"}, "HOST"),
    ({"CLUSTER_DISCOVERY": "static:::1:80"}, "CLUSTER_DISCOVERY"),
    ({"CLUSTER_DISCOVERY": "static:ho st:80"}, "CLUSTER_DISCOVERY"),
    ({"CLUSTER_DISCOVERY": "static:[db]:80"}, "CLUSTER_DISCOVERY"),
    ({"PORT": "\uff18\uff10\uff10\uff10"}, "PORT"),  # fullwidth 8000
    ({"PORT": "8_000"}, "PORT"),
    ({"DRAIN_SECONDS": "\u0663"}, "DRAIN_SECONDS"),  # Arabic-Indic 3
    ({"HOST": "::1%lo"}, "HOST"),  # passed, then uvicorn exited 3
    ({"PORT": " 80"}, "PORT"),
    ({"COLOR": ""}, "COLOR"),
    ({"LOG_LEVEL": ""}, "LOG_LEVEL"),
    ({"DRAIN_SECONDS": "3 "}, "DRAIN_SECONDS"),
    ({"APP_VERSION": "1.0\nforged"}, "APP_VERSION"),
]


def test_defaults() -> None:
    settings = Settings.from_env(GOOD)
    assert (settings.host, settings.port, settings.color) == ("0.0.0.0", 8000, "blue")
    assert (settings.drain_seconds, settings.shutdown_timeout_seconds) == (5.0, 20.0)
    assert settings.discovery.mode == "none"
    assert settings.served_by == f"blue/{settings.instance_id}"
    assert "secret-pw" not in repr(settings)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@db/ledger",
        "postgresql://u:p@db:5432/ledger?sslmode=require",
        "postgresql://u:p@[::1]:5432/ledger",
        "postgresql://u:p@[2001:db8::1]/ledger",
        "postgresql://u:p@db1:5432,db2:5433/ledger",
        "postgresql:///ledger?host=/var/run/postgresql",
        "postgres://u:p%40x@db/ledger",
    ],
)
def test_good_database_urls_parse(url: str) -> None:
    assert Settings.from_env({"DATABASE_URL": url}).database_url == url


def test_host_names_that_resolve_are_kept() -> None:
    assert Settings.from_env({**GOOD, "HOST": "localhost"}).host == "localhost"


def test_good_values_parse() -> None:
    settings = Settings.from_env(
        {
            **GOOD,
            "PORT": "9000",
            "COLOR": "GREEN",
            "DRAIN_SECONDS": "0.5",
            "CLUSTER_DISCOVERY": "static:10.0.0.1:8000, ledger-1.local:8000, [::1]:8001",
            "LOG_LEVEL": "debug",
            "INSTANCE_ID": "pod-a",
        }
    )
    assert (settings.port, settings.color, settings.drain_seconds) == (9000, "green", 0.5)
    assert settings.discovery.static_peers == ("10.0.0.1:8000", "ledger-1.local:8000", "[::1]:8001")
    assert settings.log_level == "DEBUG"
    assert settings.served_by == "green/pod-a"
    dns = Settings.from_env(
        {**GOOD, "CLUSTER_DISCOVERY": "dns:ledger-blue-headless.ledger.svc.cluster.local"}
    )
    assert (dns.discovery.mode, dns.discovery.dns_name) == (
        "dns",
        "ledger-blue-headless.ledger.svc.cluster.local",
    )


def test_database_auth_modes_parse() -> None:
    assert Settings.from_env(GOOD).database_auth == "url"
    assert Settings.from_env(GOOD).http_keep_alive_seconds == 75.0  # above the ALB's 60 s
    password_file = Settings.from_env(
        {
            "DATABASE_URL": NO_PASSWORD,
            "DATABASE_AUTH": "password-file",
            "DATABASE_PASSWORD_FILE": EXISTING_FILE,
        }
    )
    assert (password_file.database_auth, password_file.database_password_file) == (
        "password-file",
        EXISTING_FILE,
    )
    iam = Settings.from_env({"DATABASE_URL": NO_PASSWORD, "DATABASE_AUTH": "iam", "AWS_REGION": "us-east-2"})
    assert (iam.database_auth, iam.database_region) == ("iam", "us-east-2")
    preferred = Settings.from_env(
        {
            "DATABASE_URL": NO_PASSWORD,
            "DATABASE_AUTH": "iam",
            "AWS_REGION": "us-east-2",
            "DATABASE_REGION": "eu-west-1",
        }
    )
    assert preferred.database_region == "eu-west-1"
    owner = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://db/ledger",
            "DATABASE_AUTH": "secrets-manager",
            "DATABASE_SECRET_ARN": ARN,
        }
    )
    assert (owner.database_auth, owner.database_secret_arn) == ("secrets-manager", ARN)
    tuned = Settings.from_env({**GOOD, "HTTP_KEEP_ALIVE_SECONDS": "120", "DB_POOL_MAX_QUERIES": "1000"})
    assert (tuned.http_keep_alive_seconds, tuned.db_pool_max_queries) == (120.0, 1000)


@pytest.mark.parametrize(("override", "variable"), BAD_VALUES + SLIPPED_THROUGH + BAD_AUTH_VALUES)
def test_bad_value_names_the_variable(override: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**GOOD, **override})
    message = str(error.value)
    assert message.startswith(variable)
    assert "\n" not in message
    assert "secret-pw" not in message


def _run_ledger(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    unset = ("DATABASE_URL", "PORT", "COLOR", "AWS_REGION", "DATABASE_REGION")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "ledger", command],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("override", "variable"), BAD_VALUES[:6] + BAD_VALUES[-3:] + SLIPPED_THROUGH + BAD_AUTH_VALUES
)
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


# ------------------------------------------------------------- each default in one place


def test_unset_variables_take_the_field_defaults() -> None:
    settings = Settings.from_env(GOOD)
    assert settings == Settings(database_url=GOOD["DATABASE_URL"], instance_id=settings.instance_id)


# Another value for each setting whose default is not a number (numbers: default + 1 or + 0.5).
CHANGED_SETTINGS: dict[str, object] = {
    "host": "127.0.0.1",
    "color": "green",
    "app_version": "v9",
    "discovery": Discovery(mode="dns", dns_name="peers.ledger.local"),
    "trusted_proxies": (ipaddress.ip_network("10.0.0.0/8"),),
    "cluster_dns_server": "127.0.0.1:5353",
    "log_format": "text",
    "log_level": "DEBUG",
    "database_auth": "iam",  # with AWS_REGION set and a URL without a password
}
# Fields without a default of their own: required, derived, or set by DATABASE_AUTH's mode.
NOT_DEFAULTED = {
    "database_url",
    "instance_id",
    "database_password_file",
    "database_region",
    "database_secret_arn",
}


def changed_default(spec: dataclasses.Field[object]) -> object:
    if spec.name in CHANGED_SETTINGS:
        return CHANGED_SETTINGS[spec.name]
    assert isinstance(spec.default, int | float) and not isinstance(spec.default, bool), (
        f"Settings.{spec.name}: add another value for it to CHANGED_SETTINGS (or NOT_DEFAULTED)"
    )
    return spec.default + (0.5 if isinstance(spec.default, float) else 1)


def test_from_env_takes_each_default_from_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = {}
    for spec in dataclasses.fields(Settings):
        if spec.name not in NOT_DEFAULTED:
            changed[spec.name] = changed_default(spec)
            monkeypatch.setattr(spec, "default", changed[spec.name])
            monkeypatch.setattr(Settings, spec.name, changed[spec.name])
    settings = Settings.from_env({"DATABASE_URL": NO_PASSWORD, "AWS_REGION": "eu-west-1"})
    wrong = [
        f"{name}: parsed {getattr(settings, name)!r}, declared {value!r}"
        for name, value in changed.items()
        if getattr(settings, name) != value
    ]
    assert wrong == []
    assert settings.database_region == "eu-west-1"
