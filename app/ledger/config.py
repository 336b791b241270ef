"""Settings from the environment, validated once at start.

Every variable is parsed here and nowhere else. A bad or missing value raises
`ConfigError` with one line naming the variable and what it accepts; `ledger serve`
prints that line and exits with code 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Color = Literal["blue", "green"]
LogFormat = Literal["json", "text"]
DatabaseAuth = Literal["url", "password-file", "iam", "secrets-manager"]

DATABASE_AUTH_MODES: tuple[str, ...] = ("url", "password-file", "iam", "secrets-manager")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_ASCII_INT = re.compile(r"^[+-]?[0-9]+$")
_ASCII_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_INSTANCE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # goes into a response header: printable ASCII
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:([a-z]{2}(-[a-z]+)+-[0-9]{1,2}):[0-9]{12}:secret:[^\s]+$"
)


class ConfigError(ValueError):
    """A setting is missing or invalid. The message is one line, fit for a terminal."""


@dataclass(frozen=True)
class Discovery:
    """How an instance finds its peers: `dns:<name>`, `static:<host:port,...>` or alone."""

    mode: Literal["none", "dns", "static"] = "none"
    dns_name: str = ""
    static_peers: tuple[str, ...] = ()


_ENV = "env"  # Settings field metadata key: the _Var the field is read from


@dataclass(frozen=True)
class _Var:
    """The environment variable behind a Settings field. `read(env, name, default)` gets the
    field's declared default, the one place it is written, for an unset variable."""

    name: str
    read: Callable[[Mapping[str, str], str, Any], Any]


def _whole(name: str, *, low: int, high: int) -> dict[str, _Var]:
    """Read from `name`: a whole number from low to high."""
    return {_ENV: _Var(name, lambda env, n, d: _int(env, n, d, low=low, high=high))}


def _secs(name: str, *, high: float, low: float = 0.0) -> dict[str, _Var]:
    """Read from `name`: a number of seconds from low to high."""
    return {_ENV: _Var(name, lambda env, n, d: _seconds(env, n, d, high=high, low=low))}


def _one_of(name: str, allowed: tuple[str, ...], *, upper: bool = False) -> dict[str, _Var]:
    """Read from `name`: one of `allowed` (case-insensitive)."""
    return {_ENV: _Var(name, lambda env, n, d: _choice(env, n, d, allowed, upper=upper))}


def _stripped(name: str) -> dict[str, _Var]:
    """Read from `name`, surrounding spaces removed (from_env checks the value)."""
    return {_ENV: _Var(name, lambda env, n, d: d if env.get(n) is None else env[n].strip())}


def _parsed(name: str, parse: Callable[[str], Any]) -> dict[str, _Var]:
    """Read from `name` by `parse`; unset or blank is the default."""
    return {_ENV: _Var(name, lambda env, n, d: parse(env[n]) if env.get(n, "").strip() else d)}


@dataclass(frozen=True)
class Settings:
    """ledger's settings. Each field read from the environment declares its variable, bounds
    and default once, here; `from_env` reads them in this order after the cross-checked ones
    (DATABASE_URL and DATABASE_AUTH's variables, PORT, HOST, INSTANCE_ID, DB_POOL_MIN/MAX)."""

    database_url: str = field(repr=False)
    host: str = field(default="0.0.0.0", metadata=_stripped("HOST"))
    port: int = field(default=8000, metadata=_whole("PORT", low=1, high=65535))
    color: Color = field(default="blue", metadata=_one_of("COLOR", ("blue", "green")))
    app_version: str = field(
        default="dev", metadata=_parsed("APP_VERSION", lambda raw: _app_version(raw.strip()))
    )
    instance_id: str = field(default="", metadata=_stripped("INSTANCE_ID"))  # empty: <hostname>:<port>
    drain_seconds: float = field(default=5.0, metadata=_secs("DRAIN_SECONDS", high=600))
    shutdown_timeout_seconds: float = field(
        default=20.0, metadata=_secs("SHUTDOWN_TIMEOUT_SECONDS", high=3600)
    )
    discovery: Discovery = field(
        default=Discovery(), metadata=_parsed("CLUSTER_DISCOVERY", lambda raw: parse_discovery(raw))
    )
    rate_limit_per_minute: int = field(  # 0 disables rate limiting
        default=0, metadata=_whole("RATE_LIMIT_PER_MINUTE", low=0, high=10_000_000)
    )
    rate_limit_max_clients: int = field(
        default=100_000, metadata=_whole("RATE_LIMIT_MAX_CLIENTS", low=1, high=10_000_000)
    )
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), metadata=_parsed("TRUSTED_PROXIES", lambda raw: parse_trusted_proxies(raw))
    )
    cluster_interval_seconds: float = field(
        default=5.0, metadata=_secs("CLUSTER_INTERVAL_SECONDS", high=300, low=0.1)
    )
    cluster_dns_server: str = field(  # host:port; empty means the system resolver
        default="", metadata=_parsed("CLUSTER_DNS_SERVER", lambda raw: _dns_server(raw))
    )
    ws_max_per_client: int = field(default=10, metadata=_whole("WS_MAX_PER_CLIENT", low=1, high=100_000))
    ws_max_connections: int = field(
        default=1024, metadata=_whole("WS_MAX_CONNECTIONS", low=1, high=1_000_000)
    )
    ws_max_message_bytes: int = field(
        default=4096, metadata=_whole("WS_MAX_MESSAGE_BYTES", low=125, high=16 * 1024 * 1024)
    )
    ws_handshakes_per_minute: int = field(
        default=60, metadata=_whole("WS_HANDSHAKES_PER_MINUTE", low=0, high=10_000_000)
    )
    log_format: LogFormat = field(default="json", metadata=_one_of("LOG_FORMAT", ("json", "text")))
    log_level: str = field(default="INFO", metadata=_one_of("LOG_LEVEL", LOG_LEVELS, upper=True))
    db_pool_min: int = field(default=1, metadata=_whole("DB_POOL_MIN", low=0, high=100))
    db_pool_max: int = field(default=10, metadata=_whole("DB_POOL_MAX", low=1, high=100))
    db_pool_max_queries: int = field(  # a pooled connection is replaced after this many queries
        default=50_000, metadata=_whole("DB_POOL_MAX_QUERIES", low=1, high=100_000_000)
    )
    db_pool_max_inactive_seconds: float = field(  # an idle pooled connection is closed after this
        default=300.0, metadata=_secs("DB_POOL_MAX_INACTIVE_SECONDS", high=86400)
    )
    database_auth: DatabaseAuth = field(default="url", metadata=_one_of("DATABASE_AUTH", DATABASE_AUTH_MODES))
    # Set by DATABASE_AUTH's mode only (_database_auth):
    database_password_file: str = ""  # password-file: re-read for every new connection
    database_region: str = ""  # iam: the region tokens are signed for
    database_secret_arn: str = ""  # secrets-manager: the RDS-managed {username, password} secret
    database_auth_retry_seconds: float = field(  # a refused login is retried this long, fresh password
        default=5.0, metadata=_secs("DATABASE_AUTH_RETRY_SECONDS", high=300)
    )
    db_ping_timeout_seconds: float = field(
        default=1.0, metadata=_secs("DB_PING_TIMEOUT_SECONDS", high=60, low=0.05)
    )
    ready_cache_seconds: float = field(default=1.0, metadata=_secs("READY_CACHE_SECONDS", high=60))
    db_acquire_timeout_seconds: float = field(
        default=2.0, metadata=_secs("DB_ACQUIRE_TIMEOUT_SECONDS", high=300, low=0.05)
    )
    db_statement_timeout_seconds: float = field(
        default=5.0, metadata=_secs("DB_STATEMENT_TIMEOUT_SECONDS", high=3600)
    )
    db_command_timeout_seconds: float = field(
        default=6.0, metadata=_secs("DB_COMMAND_TIMEOUT_SECONDS", high=3600, low=0.05)
    )
    http_max_header_bytes: int = field(
        default=32 * 1024, metadata=_whole("HTTP_MAX_HEADER_BYTES", low=1024, high=1024 * 1024)
    )
    http_header_timeout_seconds: float = field(
        default=10.0, metadata=_secs("HTTP_HEADER_TIMEOUT_SECONDS", high=600, low=0.1)
    )
    http_body_timeout_seconds: float = field(
        default=10.0, metadata=_secs("HTTP_BODY_TIMEOUT_SECONDS", high=600, low=0.1)
    )
    http_max_connections: int = field(
        default=2048, metadata=_whole("HTTP_MAX_CONNECTIONS", low=1, high=1_000_000)
    )
    # Idle keep-alive connections live this long: above the load balancer's idle timeout
    # (the ALB's is 60 s), so the balancer never reuses a connection the app has closed.
    http_keep_alive_seconds: float = field(
        default=75.0, metadata=_secs("HTTP_KEEP_ALIVE_SECONDS", high=4000, low=1)
    )

    @property
    def served_by(self) -> str:
        """Value of the `x-served-by` header: `<color>/<instance>`."""
        return f"{self.color}/{self.instance_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping, or raise ConfigError."""
        database_url = env.get("DATABASE_URL", "").strip()
        if not database_url:
            raise ConfigError(
                "DATABASE_URL is required: set it to a Postgres URL, "
                "e.g. postgresql://user:password@host:5432/ledger"
            )
        if not database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                "DATABASE_URL must start with postgresql:// or postgres:// "
                "(got a value with another scheme; the value itself is not shown)"
            )
        _check_database_url(database_url)
        values: dict[str, Any] = {"database_url": database_url, **_database_auth(env, database_url)}
        port = values["port"] = _read_setting(env, "port")
        values["host"] = _listen_host(_read_setting(env, "host"), port)
        instance_id = _read_setting(env, "instance_id") or f"{socket.gethostname()}:{port}"
        if not _INSTANCE_ID.match(instance_id):
            raise ConfigError(
                f"INSTANCE_ID must be 1-128 printable ASCII characters without spaces (got {instance_id!r})"
            )
        values["instance_id"] = instance_id
        pool_min = values["db_pool_min"] = _read_setting(env, "db_pool_min")
        pool_max = values["db_pool_max"] = _read_setting(env, "db_pool_max")
        if pool_max < pool_min:
            raise ConfigError(f"DB_POOL_MAX ({pool_max}) must be >= DB_POOL_MIN ({pool_min})")
        for spec in fields(cls):
            if spec.name not in values and _ENV in spec.metadata:
                values[spec.name] = _read_setting(env, spec.name)
        return cls(**values)


def _read_setting(env: Mapping[str, str], name: str) -> Any:
    """Settings field `name` read from `env` by its _Var, the field's default when unset."""
    spec = next(f for f in fields(Settings) if f.name == name)
    var: _Var = spec.metadata[_ENV]
    return var.read(env, var.name, spec.default)


def _database_auth(env: Mapping[str, str], url: str) -> dict[str, str]:
    """DATABASE_AUTH and the variables its mode needs (as Settings fields); in every mode but
    `url` the URL carries no password (it would be stale after the first rotation)."""
    mode: DatabaseAuth = _read_setting(env, "database_auth")
    if mode == "url":
        return {"database_auth": mode}
    user, password, hosts = _url_login(url)
    if password:
        raise ConfigError(
            f"DATABASE_URL must not carry a password when DATABASE_AUTH is {mode}: "
            "remove it from the URL (value not shown)"
        )
    if mode == "password-file":
        path = _raw(env, "DATABASE_PASSWORD_FILE", "the path of a file holding the password") or ""
        if not path or not os.path.isabs(path) or not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ConfigError(
                "DATABASE_PASSWORD_FILE must be the absolute path of a readable file holding the "
                f"password when DATABASE_AUTH is password-file (got {path!r})"
            )
        if not user:
            raise ConfigError("DATABASE_URL must name the user when DATABASE_AUTH is password-file")
        return {"database_auth": mode, "database_password_file": path}
    if mode == "iam":
        region = _region(env)
        if not user or len(hosts) != 1:
            raise ConfigError(
                "DATABASE_URL must name the user and exactly one host when DATABASE_AUTH is iam "
                "(an IAM token is signed for one host, port and user)"
            )
        return {"database_auth": mode, "database_region": region}
    arn = _raw(env, "DATABASE_SECRET_ARN", "a Secrets Manager secret ARN") or ""
    if not _SECRET_ARN.match(arn):
        raise ConfigError(
            "DATABASE_SECRET_ARN must be a Secrets Manager secret ARN "
            f"(arn:aws:secretsmanager:<region>:<account>:secret:<name>) when DATABASE_AUTH is secrets-manager (got {arn!r})"
        )
    return {"database_auth": mode, "database_secret_arn": arn}


def _region(env: Mapping[str, str]) -> str:
    name = "DATABASE_REGION" if env.get("DATABASE_REGION") is not None else "AWS_REGION"
    region = _raw(env, name, "an AWS region such as eu-west-1") or ""
    if not _AWS_REGION.match(region):
        raise ConfigError(
            f"{name} must be an AWS region such as eu-west-1 when DATABASE_AUTH is iam "
            f"(set DATABASE_REGION or AWS_REGION; got {region!r})"
        )
    return region


def _url_login(url: str) -> tuple[str, str, list[str]]:
    """(user, password, hosts) of a Postgres URL; a password in the query counts too."""
    netloc = url.partition("://")[2].partition("/")[0].partition("?")[0]
    userinfo, at, hostlist = netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if at else ("", "", "")
    query = urllib.parse.parse_qs(url.partition("?")[2])
    if query.get("password"):
        password = password or "in the query"
    user = urllib.parse.unquote(user) or (query.get("user") or [""])[0]
    return user, password, [host for host in hostlist.split(",") if host]


def parse_discovery(raw: str) -> Discovery:
    """Parse CLUSTER_DISCOVERY: `dns:<name>`, `static:<host:port,...>`, or empty."""
    value = raw.strip()
    if not value:
        return Discovery()
    kind, _, rest = value.partition(":")
    if kind == "dns" and rest.strip():
        return Discovery(mode="dns", dns_name=rest.strip())
    if kind == "static" and rest.strip():
        peers = tuple(p.strip() for p in rest.split(",") if p.strip())
        for peer in peers:
            _check_host_port(peer)
        return Discovery(mode="static", static_peers=peers)
    raise ConfigError(
        f"CLUSTER_DISCOVERY must be dns:<name>, static:<host:port,...> or unset (got {value!r})"
    )


def parse_trusted_proxies(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """TRUSTED_PROXIES: comma-separated addresses or CIDR ranges whose X-Forwarded-For is believed."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"TRUSTED_PROXIES entry {item!r} is not an IP address or CIDR range (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _dns_server(raw: str) -> str:
    value = raw.strip()
    if value:
        host, sep, port = value.rpartition(":")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            host = ""
        if not sep or not host or not _is_port(port):
            raise ConfigError(f"CLUSTER_DNS_SERVER must be ip:port, e.g. 127.0.0.1:5353 (got {value!r})")
    return value


def _check_database_url(url: str) -> None:
    """Host list and ports of a Postgres URL (`host[:port][,host[:port]...]`, IPv6 in brackets).

    Messages never show the value: it may hold a password.
    """
    netloc = url.partition("://")[2].partition("/")[0].partition("?")[0].rpartition("@")[2]
    for entry in netloc.split(","):
        if entry.startswith("["):
            address, closed, port = entry[1:].partition("]")
            if not closed:
                raise ConfigError(
                    "DATABASE_URL has an unclosed IPv6 bracket '[' in its host (value not shown)"
                )
            if not _is_ipv6(address) or (port and not port.startswith(":")):
                raise ConfigError("DATABASE_URL has an invalid bracketed IPv6 host (value not shown)")
            port = port[1:]
        else:
            if "]" in entry:
                raise ConfigError("DATABASE_URL has a ']' without '[' in its host (value not shown)")
            port = entry.partition(":")[2]
        if port and not _is_port(port):
            raise ConfigError(
                "DATABASE_URL has an invalid port: use a number from 1 to 65535 (value not shown)"
            )


def _listen_host(host: str, port: int) -> str:
    """HOST must be an address, or a name that resolves now (not after six uvicorn lines)."""
    if not host:
        raise ConfigError("HOST must not be empty: use an address such as 0.0.0.0 or 127.0.0.1")
    if "%" in host:
        raise ConfigError(f"HOST {host!r}: a zone id (%...) cannot be listened on; use the address alone")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError):
            raise ConfigError(f"HOST {host!r} does not resolve to an address to listen on") from None
    return host


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _check_host_port(peer: str) -> None:
    """A static peer: `name:port`, `ipv4:port` or `[ipv6]:port`."""
    host, sep, port = peer.rpartition(":")
    if not sep or not host or not _is_port(port):
        raise ConfigError(f"CLUSTER_DISCOVERY static peer {peer!r} must be host:port with a port 1-65535")
    if host.startswith("[") and host.endswith("]"):
        if _is_ipv6(host[1:-1]):
            return
        raise ConfigError(f"CLUSTER_DISCOVERY static peer {peer!r}: only an IPv6 address goes in brackets")
    if ":" in host:
        raise ConfigError(
            f"CLUSTER_DISCOVERY static peer {peer!r}: write an IPv6 address in brackets, e.g. [::1]:8000"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise ConfigError(f"CLUSTER_DISCOVERY static peer {peer!r} has an invalid host name") from None


def _app_version(version: str) -> str:
    if not version.isprintable():
        raise ConfigError(f"APP_VERSION must be printable characters on one line (got {version!r})")
    return version


def _raw(env: Mapping[str, str], name: str, expected: str) -> str | None:
    """The variable's value, None when unset; set but empty or padded with spaces is refused."""
    raw = env.get(name)
    if raw is not None and (not raw or raw != raw.strip()):
        raise ConfigError(f"{name} must be {expected} without surrounding spaces, or unset (got {raw!r})")
    return raw


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = _raw(env, name, f"a whole number from {low} to {high}")
    if raw is None:
        return default
    if not _ASCII_INT.match(raw):  # int() would also take fullwidth digits and "1_000"
        raise ConfigError(f"{name} must be a whole number from {low} to {high} (got {raw!r})")
    value = int(raw)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high} (got {raw!r})")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, *, high: float, low: float = 0.0) -> float:
    raw = _raw(env, name, f"a number of seconds from {low:g} to {high:g}")
    if raw is None:
        return default
    if not _ASCII_NUMBER.match(raw):  # float() would also take fullwidth digits, "1_0", "nan", "inf"
        raise ConfigError(f"{name} must be a number of seconds from {low:g} to {high:g} (got {raw!r})")
    value = float(raw)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be a number of seconds from {low:g} to {high:g} (got {raw!r})")
    return value


def _choice(
    env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False
) -> str:
    raw = _raw(env, name, f"one of {', '.join(allowed)}")
    if raw is None:
        return default
    value = raw.upper() if upper else raw.lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {raw!r})")
    return value
