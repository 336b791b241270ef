"""Where a new database connection's password comes from (DATABASE_AUTH).

A password copied into DATABASE_URL at deploy time stops working at the first rotation
(RDS rotates its managed master password every 7 days). So, except in `url` mode, the
password is looked up for every NEW connection, through asyncpg's `password` callable:

- `password-file`: DATABASE_PASSWORD_FILE is read again (a mounted Secret, which the
  kubelet refreshes in place);
- `iam`: an RDS IAM auth token is presigned locally with the pod's IAM credentials (IRSA,
  botocore's default chain), valid 15 minutes, for the URL's host, port and user;
- `secrets-manager`: the RDS-managed secret `{username, password}` is fetched once and
  cached, and fetched again after a refused login (the migration Job, as schema owner).

A rotation has a short window where the source and the database disagree, so a refused
login on a new connection is retried (bounded by DATABASE_AUTH_RETRY_SECONDS) with a fresh
password instead of failing the request. Connections already open are never affected:
Postgres checks a password only when a connection starts. botocore is imported only by
the two AWS modes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from pathlib import Path
from typing import Any

import asyncpg

from ledger.config import Settings
from ledger.errors import ServiceUnavailable

log = logging.getLogger("ledger.credentials")

# A refused login (wrong password or token, or a role that may not log in yet): retried.
AUTH_REFUSED: tuple[type[BaseException], ...] = (asyncpg.InvalidAuthorizationSpecificationError,)
_RETRY_MIN, _RETRY_MAX = 0.05, 0.5
# A password file is a few bytes; more is a wrong mount, not read again for every connection.
MAX_PASSWORD_FILE_BYTES = 4096
# AWS calls (Secrets Manager, and STS when IRSA credentials refresh) give up within ~15 s,
# not botocore's default of 60 s timeouts retried 5 times: a blocked network must end in a
# clear error before the migration Job's deadline, and not hold a thread for minutes.
_AWS_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 3,
    "retries": {"max_attempts": 2, "mode": "standard"},
}


class CredentialsError(ServiceUnavailable):
    """No login: the password source failed (unreadable file, no AWS credentials) or the
    database kept refusing past the retry window. A request sees 503 (retry); the pool's
    open connections are left alone, they are not what is broken."""

    code = "database_login_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class Credentials:
    """`url` mode: the URL carries everything; also the base of the other modes."""

    mode = "url"

    def __init__(self, retry_seconds: float = 5.0) -> None:
        self.retry_seconds = retry_seconds
        self.logins_refused = 0
        self.last_refused_at = float("-inf")  # time.monotonic() of the latest refused login

    async def password(self) -> str | None:
        """The password for the next new connection; None: the URL's own."""
        return None

    async def user(self) -> str | None:
        """A user that overrides the URL's (only the secret may name one); None: the URL's."""
        return None

    def invalidate(self) -> None:
        """A login was refused: drop anything cached, so the retry uses a fresh password."""

    async def connect(self, dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
        """asyncpg.connect with this source's password, retrying a refused login briefly.

        Has the signature asyncpg's pool expects of its `connect` argument."""
        deadline = time.monotonic() + self.retry_seconds
        delay = _RETRY_MIN
        while True:
            try:
                return await asyncpg.connect(dsn, **kwargs, **await self._login())
            except AUTH_REFUSED as exc:
                self.logins_refused += 1
                self.last_refused_at = time.monotonic()
                self.invalidate()
                if self.mode == "url":
                    raise  # nothing fresh to retry with: today's behaviour
                if time.monotonic() + delay > deadline:
                    raise CredentialsError(
                        f"the database refused the login for {self.retry_seconds:g}s ({type(exc).__name__})"
                    ) from exc
                log.warning(
                    "database refused the login; retrying with a fresh password",
                    extra={"auth": self.mode, "error": type(exc).__name__, "retry_in": delay},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    async def _login(self) -> dict[str, Any]:
        if self.mode == "url":
            return {}
        login: dict[str, Any] = {"password": self.password}  # a coroutine function: called per connection
        user = await self.user()
        if user:
            login["user"] = user
        return login


class PasswordFile(Credentials):
    """The password is the content of a file (trailing newline ignored), read per connection."""

    mode = "password-file"

    def __init__(self, path: str, retry_seconds: float = 5.0) -> None:
        super().__init__(retry_seconds)
        self.path = Path(path)

    async def password(self) -> str:
        try:
            with self.path.open("rb") as file:
                data = file.read(MAX_PASSWORD_FILE_BYTES + 1)
            text = data.decode("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:  # not a file, unreadable, not UTF-8
            raise CredentialsError(f"cannot read DATABASE_PASSWORD_FILE: {type(exc).__name__}") from None
        if len(data) > MAX_PASSWORD_FILE_BYTES:
            raise CredentialsError(f"DATABASE_PASSWORD_FILE is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
        if not text:
            raise CredentialsError("DATABASE_PASSWORD_FILE is empty")
        return text


def _aws_client(service: str, region: str) -> Any:
    """A botocore client with bounded timeouts and retries (also for the STS calls its
    credential chain makes). Blocking; botocore is imported only here."""
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    session.set_default_client_config(botocore.config.Config(**_AWS_CLIENT_CONFIG))
    return session.create_client(service, region_name=region)


def _url_target(dsn: str) -> tuple[str, int, str]:
    """(host, port, user) of a single-host Postgres URL."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qs(parts.query)
    user = urllib.parse.unquote(parts.username or "") or (query.get("user") or [""])[0]
    return parts.hostname or "localhost", parts.port or 5432, user


class IamToken(Credentials):
    """An RDS IAM auth token per connection, signed locally with the default credential chain."""

    mode = "iam"

    def __init__(self, dsn: str, region: str, retry_seconds: float = 5.0) -> None:
        super().__init__(retry_seconds)
        self.host, self.port, self.db_user = _url_target(dsn)
        self.region = region
        self._client: Any = None

    def token(self) -> str:
        """A fresh token (blocking: the first call may fetch IRSA credentials from STS)."""
        try:  # creating the client can fail too: AWS_PROFILE names no profile, a bad config file
            if self._client is None:
                self._client = _aws_client("rds", self.region)
            return str(
                self._client.generate_db_auth_token(
                    DBHostname=self.host, Port=self.port, DBUsername=self.db_user, Region=self.region
                )
            )
        except Exception as exc:  # no credentials, an expired web identity token, ...
            raise CredentialsError(f"cannot sign an RDS IAM token: {type(exc).__name__}") from None

    async def password(self) -> str:
        return await asyncio.to_thread(self.token)


class SecretsManagerSecret(Credentials):
    """The RDS-managed secret ({username, password}), cached until a login is refused."""

    mode = "secrets-manager"

    def __init__(self, secret_arn: str, url_user: str = "", retry_seconds: float = 5.0) -> None:
        super().__init__(retry_seconds)
        self.secret_arn = secret_arn
        self.region = secret_arn.split(":")[3]
        self.url_user = url_user  # the URL's user, if it names one: must be the secret's
        self.fetches = 0
        self._client: Any = None
        self._cached: tuple[str, str] | None = None

    def fetch(self) -> tuple[str, str]:
        """(username, password) from Secrets Manager (blocking, a network call)."""
        try:
            if self._client is None:
                self._client = _aws_client("secretsmanager", self.region)
            answer = self._client.get_secret_value(SecretId=self.secret_arn)
            secret = json.loads(answer["SecretString"])
            username, password = str(secret["username"]), str(secret["password"])
        except Exception as exc:
            raise CredentialsError(f"cannot read DATABASE_SECRET_ARN: {type(exc).__name__}") from None
        self.fetches += 1
        return username, password

    async def _secret(self) -> tuple[str, str]:
        if self._cached is None:
            username, password = await asyncio.to_thread(self.fetch)
            if self.url_user and username != self.url_user:
                # Not a rotation: the URL's user would never log in with this password.
                raise CredentialsError(
                    f"DATABASE_SECRET_ARN holds the password of {username!r}, but DATABASE_URL "
                    f"logs in as {self.url_user!r}: remove the user from DATABASE_URL (the secret names it)"
                )
            self._cached = (username, password)
        return self._cached

    async def password(self) -> str:
        return (await self._secret())[1]

    async def user(self) -> str | None:
        return None if self.url_user else (await self._secret())[0]

    def invalidate(self) -> None:
        self._cached = None


def credentials_for(settings: Settings) -> Credentials:
    """The password source DATABASE_AUTH names."""
    retry = settings.database_auth_retry_seconds
    if settings.database_auth == "password-file":
        return PasswordFile(settings.database_password_file, retry)
    if settings.database_auth == "iam":
        return IamToken(settings.database_url, settings.database_region, retry)
    if settings.database_auth == "secrets-manager":
        url_user = _url_target(settings.database_url)[2]
        return SecretsManagerSecret(settings.database_secret_arn, url_user, retry)
    return Credentials(retry)
