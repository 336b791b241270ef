"""Database credentials that survive rotation, and the least-privilege role ledger runs as.

A real Postgres that checks passwords (scram-sha-256) for the roles under test: ledger runs
as `ledger_app` with DATABASE_AUTH=password-file under continuous load while the role's
password is rotated in the database and in the file, in both orders, with a gap; no request
may fail. IAM tokens are signed by botocore with fake credentials; the Secrets Manager mode
runs against moto."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from cutover.local.database import migrate_database
from cutover.local.ledger_process import LedgerProcess
from cutover.local.postgres import EmbeddedPostgres
from ledger.config import Settings
from ledger.credentials import CredentialsError, IamToken, PasswordFile, SecretsManagerSecret, credentials_for
from ledger.migrate import migrate
from ledger.runtime import Runtime
from tests.app.conftest import open_account

pytestmark = pytest.mark.slow

APP_ROLE = "ledger_app"
OWNER_ROLE = "ledger_owner"  # stands in for the RDS master user: CREATEROLE, owns the database
REFUSED_LOG = "database refused the login"
SECRET_ARN_PREFIX = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"


@pytest.fixture(scope="module")
def scram_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A Postgres where ledger_app and ledger_owner must give their password (others: trust)."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("scram") / "pg")
    server.start()
    try:
        hba = Path(server.psql("SHOW hba_file").strip())
        rule = f"host all {APP_ROLE},{OWNER_ROLE} {server.host}/32 scram-sha-256\n"
        hba.write_text(rule + hba.read_text())
        server.psql("SELECT pg_reload_conf()")
        yield server
    finally:
        server.destroy()


@pytest.fixture
def admin_url(scram_postgres: EmbeddedPostgres) -> str:
    """A new database migrated by the (trusted) superuser."""
    url = scram_postgres.create_database(f"r_{uuid.uuid4().hex[:12]}")
    migrate_database(url)
    return url


def _as(role: str, admin_url: str) -> str:
    """The password-less URL of the same database for `role`."""
    return admin_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)


async def _admin(admin_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _set_password(admin_url: str, role: str, password: str) -> None:
    asyncio.run(_admin(admin_url, f"ALTER ROLE {role} PASSWORD '{password}'"))


def _write_atomically(path: Path, text: str) -> None:
    """As the kubelet updates a mounted Secret: the new content appears at once."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text + "\n")
    os.replace(fresh, path)


def _refusals(log: Path) -> int:
    return log.read_text().count(REFUSED_LOG) if log.exists() else 0


@pytest.fixture
def start_as_app(tmp_path: Path, admin_url: str) -> Iterator[Callable[..., LedgerProcess]]:
    """Starts `ledger serve` as ledger_app with a password file; stops what it started."""
    started: list[LedgerProcess] = []

    def start(password_file: Path, **env: str) -> LedgerProcess:
        settings = {
            "DATABASE_URL": _as(APP_ROLE, admin_url),
            "DATABASE_AUTH": "password-file",
            "DATABASE_PASSWORD_FILE": str(password_file),
            "LOG_FORMAT": "json",
            "INSTANCE_ID": "rotation-0",
            **env,
        }
        process = LedgerProcess(settings, tmp_path / "ledger.log")
        started.append(process)  # before it starts: a start that fails is stopped too
        return process.start()

    yield start
    for process in started:
        process.stop()


# --- the role -------------------------------------------------------------------------


def test_ledger_app_may_use_the_tables_but_not_change_the_schema(admin_url: str) -> None:
    _set_password(admin_url, APP_ROLE, "app-pw-1")

    async def check() -> dict[str, str]:
        conn = await asyncpg.connect(_as(APP_ROLE, admin_url), password="app-pw-1")
        denied: dict[str, str] = {}
        try:
            await conn.fetchval("SELECT max(version) FROM schema_migrations")
            account = uuid.uuid4()
            await conn.execute(
                "INSERT INTO accounts (id, name, currency, balance) VALUES ($1, 'a', 'EUR', 5)", account
            )
            await conn.execute("UPDATE accounts SET balance = 6 WHERE id = $1", account)
            for statement in (
                "CREATE TABLE sneaky (id int)",
                "DROP TABLE transfers",
                "TRUNCATE accounts",
                "DELETE FROM transfers",
                "ALTER TABLE accounts ADD COLUMN x int",
                "CREATE ROLE another",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError) as error:
                    await conn.execute(statement)
                denied[statement] = str(error.value)
            attributes = await conn.fetchrow(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname = $1",
                APP_ROLE,
            )
            owned = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)",
                APP_ROLE,
            )
        finally:
            await conn.close()
        assert attributes is not None and tuple(attributes) == (False, False, False, True)
        assert owned == 0
        return denied

    denied = asyncio.run(check())
    assert "permission denied" in denied["CREATE TABLE sneaky (id int)"]
    assert "must be owner" in denied["DROP TABLE transfers"]


def test_tables_a_later_migration_creates_are_granted_by_default(admin_url: str) -> None:
    _set_password(admin_url, APP_ROLE, "app-pw-1")
    asyncio.run(_admin(admin_url, "CREATE TABLE later_feature (id int PRIMARY KEY)"))

    async def use() -> int:
        conn = await asyncpg.connect(_as(APP_ROLE, admin_url), password="app-pw-1")
        try:
            await conn.execute("INSERT INTO later_feature VALUES (1)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM later_feature")
            return int(await conn.fetchval("SELECT count(*) FROM later_feature"))
        finally:
            await conn.close()

    assert asyncio.run(use()) == 1


def test_databases_on_one_server_migrate_at_once_and_share_the_role(own_postgres: EmbeddedPostgres) -> None:
    urls = [own_postgres.create_database(f"c_{i}") for i in range(3)]

    async def run() -> list[int]:
        conns = [await asyncpg.connect(url) for url in urls]
        try:
            applied = await asyncio.gather(*(migrate(conn) for conn in conns))
            again = await asyncio.gather(*(migrate(conn) for conn in conns))
            assert all(not a for a in again)
            return [len(a) for a in applied]
        finally:
            for conn in conns:
                await conn.close()

    counts = asyncio.run(run())
    assert counts == [counts[0]] * 3 and counts[0] >= 3
    assert own_postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{APP_ROLE}'").strip() == "1"


# --- ledger as ledger_app -------------------------------------------------------------


def test_ledger_runs_fully_as_ledger_app_with_its_feed(
    tmp_path: Path, admin_url: str, start_as_app: Callable[..., LedgerProcess]
) -> None:
    _set_password(admin_url, APP_ROLE, "app-pw-feed")
    password_file = tmp_path / "password"
    _write_atomically(password_file, "app-pw-feed")
    process = start_as_app(password_file)

    async def transfer_and_hear_it() -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
            source = (
                await http.post("/accounts", json={"name": "a", "currency": "EUR", "opening_balance": 100})
            ).json()
            target = (
                await http.post("/accounts", json={"name": "b", "currency": "EUR", "opening_balance": 0})
            ).json()
            async with ws_connect(process.url.replace("http://", "ws://") + "/ws/transfers") as ws:
                await asyncio.sleep(0.3)  # the subscription is registered before the transfer
                answer = await http.post(
                    "/transfers",
                    json={"from_account_id": source["id"], "to_account_id": target["id"], "amount": 40},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                heard = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return answer.status_code, heard

    status, heard = asyncio.run(transfer_and_hear_it())
    assert status == 201 and heard["amount"] == 40
    backends = asyncio.run(_backends(admin_url))
    assert backends and {row["usename"] for row in backends} == {APP_ROLE}


async def _backends(admin_url: str, since: Any = None) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(admin_url)
    try:
        return list(
            await conn.fetch(
                "SELECT pid, usename, application_name, backend_start FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'ledger-%' "
                "AND ($1::timestamptz IS NULL OR backend_start > $1)",
                since,
            )
        )
    finally:
        await conn.close()


class Load:
    """Clients moving money and reading accounts until told to stop; every answer is checked."""

    def __init__(self, url: str, accounts: list[str]) -> None:
        self.url, self.accounts = url, accounts
        self.requests = 0
        self.failures: list[str] = []
        self.stop = asyncio.Event()

    async def client(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            i = n
            while not self.stop.is_set():
                i += 1
                source, target = self.accounts[i % 4], self.accounts[(i + 1) % 4]
                try:
                    answer = await http.post(
                        "/transfers",
                        json={"from_account_id": source, "to_account_id": target, "amount": 1},
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                    read = await http.get(f"/accounts/{target}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.requests += 2
                if answer.status_code != 201:
                    self.failures.append(f"transfer {answer.status_code} {answer.text}")
                if read.status_code != 200:
                    self.failures.append(f"read {read.status_code} {read.text}")

    async def served(self, more: int) -> None:
        """Wait until `more` further requests were answered (bounded by the test timeout)."""
        target = self.requests + more
        while self.requests < target and not self.failures:
            await asyncio.sleep(0.02)


async def _wait_for_refusal(log: Path, before: int, within: float = 20.0) -> bool:
    """Until ledger logs a refused login (a new connection tried the stale password)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _refusals(log) > before:
            return True
        await asyncio.sleep(0.05)
    return False


def test_password_rotation_under_load_fails_no_request(
    tmp_path: Path, admin_url: str, start_as_app: Callable[..., LedgerProcess]
) -> None:
    _set_password(admin_url, APP_ROLE, "pw-1")
    password_file = tmp_path / "password"
    _write_atomically(password_file, "pw-1")
    # DB_POOL_MAX_QUERIES=4: pooled connections are replaced all the time, so new
    # connections log in throughout the rotation.
    process = start_as_app(
        password_file,
        DB_POOL_MIN="2",
        DB_POOL_MAX="4",
        DB_POOL_MAX_QUERIES="4",
        DB_ACQUIRE_TIMEOUT_SECONDS="5",
    )
    log = tmp_path / "ledger.log"
    with httpx.Client(base_url=process.url, timeout=10) as http:
        accounts = [open_account(http, 1_000_000) for _ in range(4)]

    async def scenario() -> tuple[Load, dict[str, bool], Any]:
        load = Load(process.url, accounts)
        clients = [asyncio.create_task(load.client(n)) for n in range(8)]
        refused: dict[str, bool] = {}
        try:
            await load.served(100)
            # 1. The database first, the file after a gap: new logins with the file's old
            # password are refused until the file catches up.
            seen = _refusals(log)
            await _admin(admin_url, f"ALTER ROLE {APP_ROLE} PASSWORD 'pw-2'")
            refused["database first"] = await _wait_for_refusal(log, seen)
            _write_atomically(password_file, "pw-2")
            await load.served(150)
            # 2. The file first, the database after a gap.
            seen = _refusals(log)
            _write_atomically(password_file, "pw-3")
            refused["file first"] = await _wait_for_refusal(log, seen)
            await _admin(admin_url, f"ALTER ROLE {APP_ROLE} PASSWORD 'pw-3'")
            rotated_at = await _now(admin_url)
            await load.served(150)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
        return load, refused, rotated_at

    load, refused, rotated_at = asyncio.run(scenario())
    print(f"{load.requests} requests, {_refusals(log)} refused logins retried")
    assert load.failures == []
    assert load.requests >= 400
    assert refused == {"database first": True, "file first": True}

    # Connections opened after the rotation logged in with the new password, the only one
    # that still works.
    after = asyncio.run(_backends(admin_url, rotated_at))
    assert after and {row["usename"] for row in after} == {APP_ROLE}
    for stale in ("pw-1", "pw-2"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(_login(_as(APP_ROLE, admin_url), stale))
    asyncio.run(_login(_as(APP_ROLE, admin_url), "pw-3"))
    with httpx.Client(base_url=process.url, timeout=10) as http:
        balances = [http.get(f"/accounts/{a}").json()["balance"] for a in accounts]
    assert sum(balances) == 4 * 1_000_000


async def _now(admin_url: str) -> Any:
    conn = await asyncpg.connect(admin_url)
    try:
        return await conn.fetchval("SELECT clock_timestamp()")
    finally:
        await conn.close()


async def _login(url: str, password: str) -> None:
    conn = await asyncpg.connect(url, password=password)
    await conn.close()


def test_a_login_refused_past_the_retry_window_is_a_clear_503_cause(tmp_path: Path, admin_url: str) -> None:
    _set_password(admin_url, APP_ROLE, "right")
    password_file = tmp_path / "password"
    _write_atomically(password_file, "wrong")
    source = PasswordFile(str(password_file), retry_seconds=0.3)

    async def attempt() -> None:
        await source.connect(_as(APP_ROLE, admin_url), timeout=5)

    with pytest.raises(CredentialsError) as error:
        asyncio.run(attempt())
    assert error.value.status == 503 and "refused the login" in error.value.message
    assert source.logins_refused >= 2  # retried, with the file read again each time


# --- IAM tokens and Secrets Manager -----------------------------------------------------


@pytest.mark.usefixtures("fake_aws")
def test_iam_mode_signs_a_connect_token_per_connection_for_the_url() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://ledger_app@db.example.internal:6543/ledger",
            "DATABASE_AUTH": "iam",
            "DATABASE_REGION": "eu-west-1",
        }
    )
    source = credentials_for(settings)
    assert isinstance(source, IamToken)

    async def mint() -> tuple[dict[str, Any], str]:
        login = await source._login()
        token = await login["password"]()  # what asyncpg calls for each new connection
        return login, token

    login, token = asyncio.run(mint())
    assert callable(login["password"]) and "user" not in login
    assert token.startswith("db.example.internal:6543/?")
    assert "Action=connect" in token and "DBUser=ledger_app" in token
    assert "%2Feu-west-1%2Frds-db%2Faws4_request" in token and "X-Amz-Signature=" in token


def test_url_mode_never_imports_botocore() -> None:
    code = (
        "import sys; from ledger.config import Settings; from ledger.credentials import credentials_for; "
        "import ledger.runtime, ledger.cli, ledger.server; "
        "s = Settings.from_env({'DATABASE_URL': 'postgresql://u:p@db/x'}); c = credentials_for(s); "
        "import asyncio; assert asyncio.run(c._login()) == {}; "
        "assert 'botocore' not in sys.modules, 'botocore imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _owner_database(server: EmbeddedPostgres, password: str) -> str:
    """A database owned by ledger_owner (CREATEROLE, not superuser): the RDS master's shape."""
    name = f"o_{uuid.uuid4().hex[:12]}"
    server.psql(
        f"DO $$ BEGIN CREATE ROLE {OWNER_ROLE} LOGIN CREATEROLE; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    server.psql(f"ALTER ROLE {OWNER_ROLE} PASSWORD '{password}'")
    server.psql(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
    return server.url(name)


@pytest.mark.usefixtures("fake_aws")
def test_secrets_manager_mode_caches_the_secret_and_refetches_after_a_rotation(
    scram_postgres: EmbeddedPostgres,
) -> None:
    from moto import mock_aws

    admin_url = _owner_database(scram_postgres, "owner-1")
    url_without_user = admin_url.replace("postgresql://postgres@", "postgresql://", 1)
    with mock_aws():
        import boto3

        secrets = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = secrets.create_secret(
            Name="rds!db-ledger", SecretString=json.dumps({"username": OWNER_ROLE, "password": "owner-1"})
        )["ARN"]
        source = SecretsManagerSecret(arn, url_user="", retry_seconds=5)

        async def who() -> str:
            conn = await source.connect(url_without_user, timeout=5)
            try:
                return str(await conn.fetchval("SELECT current_user"))
            finally:
                await conn.close()

        assert asyncio.run(who()) == OWNER_ROLE
        assert asyncio.run(who()) == OWNER_ROLE
        assert (source.fetches, source.logins_refused) == (1, 0)  # cached
        # RDS rotates: the database and the secret change; the cached password is stale.
        scram_postgres.psql(f"ALTER ROLE {OWNER_ROLE} PASSWORD 'owner-2'")
        secrets.put_secret_value(
            SecretId=arn, SecretString=json.dumps({"username": OWNER_ROLE, "password": "owner-2"})
        )
        assert asyncio.run(who()) == OWNER_ROLE
        assert (source.fetches, source.logins_refused) == (2, 1)


@pytest.mark.usefixtures("fake_aws")
def test_ledger_migrate_runs_as_the_schema_owner_from_secrets_manager(
    scram_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    admin_url = _owner_database(scram_postgres, "owner-m")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        import boto3

        secrets = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=endpoint)
        arn = secrets.create_secret(
            Name="rds!db-migrate", SecretString=json.dumps({"username": OWNER_ROLE, "password": "owner-m"})
        )["ARN"]
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": endpoint,
            "DATABASE_URL": admin_url.replace("postgresql://postgres@", "postgresql://", 1),
            "DATABASE_AUTH": "secrets-manager",
            "DATABASE_SECRET_ARN": arn,
            "LOG_FORMAT": "text",
        }
        result = subprocess.run(
            [sys.executable, "-m", "ledger", "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied migration 0003_ledger_app_role" in result.stdout
    owners = scram_postgres.psql(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
        database=admin_url.rsplit("/", 1)[1],
    )
    assert owners.split() == [OWNER_ROLE]


def test_a_readiness_failure_during_a_rotation_keeps_the_connections_that_work(
    tmp_path: Path, admin_url: str
) -> None:
    """The database changed the password, the kubelet has not refreshed the file yet: the
    readiness ping needs a new login and fails. Before, that failure expired every pooled
    connection, so the ones still logged in were closed and every request then needed a
    login that could only be refused: a partial failure made total."""
    _set_password(admin_url, APP_ROLE, "before")
    password_file = tmp_path / "password"
    _write_atomically(password_file, "before")
    settings = Settings.from_env(
        {
            "DATABASE_URL": _as(APP_ROLE, admin_url),
            "DATABASE_AUTH": "password-file",
            "DATABASE_PASSWORD_FILE": str(password_file),
            "DATABASE_AUTH_RETRY_SECONDS": "1",
            "DB_POOL_MIN": "1",
            "DB_POOL_MAX": "2",
            "DB_PING_TIMEOUT_SECONDS": "0.5",
            "READY_CACHE_SECONDS": "0",
        }
    )

    async def run() -> tuple[str | None, int, int]:
        runtime = Runtime(settings)
        runtime.start()
        try:
            while not runtime.started:
                await asyncio.sleep(0.05)
            assert runtime.pool is not None
            async with runtime.pool.acquire() as busy:  # a request holds the open connection
                await _admin(admin_url, f"ALTER ROLE {APP_ROLE} PASSWORD 'after'")
                failure = await runtime.readiness_failure()  # the ping's new login is refused
                kept = busy.get_server_pid()
            async with runtime.pool.acquire() as again:
                return failure, kept, again.get_server_pid()
        finally:
            await runtime.stop(close_within=2)

    failure, kept, served_by = asyncio.run(asyncio.wait_for(run(), 60))
    assert failure is not None
    assert served_by == kept  # the connection that still works was kept, not expired
