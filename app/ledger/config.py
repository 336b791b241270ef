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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    host: str = "0.0.0.0"
    port: int = 8000
    color: Color = "blue"
    app_version: str = "dev"
    instance_id: str = ""
    drain_seconds: float = 5.0
    shutdown_timeout_seconds: float = 20.0
    discovery: Discovery = Discovery()
    rate_limit_per_minute: int = 0  # 0 disables rate limiting
    rate_limit_max_clients: int = 100_000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    cluster_interval_seconds: float = 5.0
    cluster_dns_server: str = ""  # host:port; empty means the system resolver
    ws_max_per_client: int = 10
    ws_max_connections: int = 1024
    ws_max_message_bytes: int = 4096
    ws_handshakes_per_minute: int = 60
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    db_pool_min: int = 1
    db_pool_max: int = 10
    db_pool_max_queries: int = 50_000  # a pooled connection is replaced after this many queries
    db_pool_max_inactive_seconds: float = 300.0  # an idle pooled connection is closed after this
    database_auth: DatabaseAuth = "url"
    database_password_file: str = ""  # password-file: re-read for every new connection
    database_region: str = ""  # iam: the region tokens are signed for
    database_secret_arn: str = ""  # secrets-manager: the RDS-managed {username, password} secret
    database_auth_retry_seconds: float = 5.0  # a refused login is retried this long, fresh password
    db_ping_timeout_seconds: float = 1.0
    ready_cache_seconds: float = 1.0
    db_acquire_timeout_seconds: float = 2.0
    db_statement_timeout_seconds: float = 5.0
    db_command_timeout_seconds: float = 6.0
    http_max_header_bytes: int = 32 * 1024
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 10.0
    http_max_connections: int = 2048
    # Idle keep-alive connections live this long: above the load balancer's idle timeout
    # (the ALB's is 60 s), so the balancer never reuses a connection the app has closed.
    http_keep_alive_seconds: float = 75.0

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
        auth = _database_auth(env, database_url)
        port = _int(env, "PORT", 8000, low=1, high=65535)
        host = _listen_host(env.get("HOST", "0.0.0.0").strip(), port)
        instance_id = env.get("INSTANCE_ID", "").strip() or f"{socket.gethostname()}:{port}"
        if not _INSTANCE_ID.match(instance_id):
            raise ConfigError(
                f"INSTANCE_ID must be 1-128 printable ASCII characters without spaces (got {instance_id!r})"
            )
        pool_min = _int(env, "DB_POOL_MIN", 1, low=0, high=100)
        pool_max = _int(env, "DB_POOL_MAX", 10, low=1, high=100)
        if pool_max < pool_min:
            raise ConfigError(f"DB_POOL_MAX ({pool_max}) must be >= DB_POOL_MIN ({pool_min})")
        return cls(
            database_url=database_url,
            host=host,
            port=port,
            color=_choice(env, "COLOR", "blue", ("blue", "green")),  # type: ignore[arg-type]
            app_version=_app_version(env.get("APP_VERSION", "dev").strip() or "dev"),
            instance_id=instance_id,
            drain_seconds=_seconds(env, "DRAIN_SECONDS", 5.0, high=600),
            shutdown_timeout_seconds=_seconds(env, "SHUTDOWN_TIMEOUT_SECONDS", 20.0, high=3600),
            discovery=parse_discovery(env.get("CLUSTER_DISCOVERY", "")),
            rate_limit_per_minute=_int(env, "RATE_LIMIT_PER_MINUTE", 0, low=0, high=10_000_000),
            rate_limit_max_clients=_int(env, "RATE_LIMIT_MAX_CLIENTS", 100_000, low=1, high=10_000_000),
            trusted_proxies=parse_trusted_proxies(env.get("TRUSTED_PROXIES", "")),
            cluster_interval_seconds=_seconds(env, "CLUSTER_INTERVAL_SECONDS", 5.0, high=300, low=0.1),
            cluster_dns_server=_dns_server(env.get("CLUSTER_DNS_SERVER", "")),
            ws_max_per_client=_int(env, "WS_MAX_PER_CLIENT", 10, low=1, high=100_000),
            ws_max_connections=_int(env, "WS_MAX_CONNECTIONS", 1024, low=1, high=1_000_000),
            ws_max_message_bytes=_int(env, "WS_MAX_MESSAGE_BYTES", 4096, low=125, high=16 * 1024 * 1024),
            ws_handshakes_per_minute=_int(env, "WS_HANDSHAKES_PER_MINUTE", 60, low=0, high=10_000_000),
            log_format=_choice(env, "LOG_FORMAT", "json", ("json", "text")),  # type: ignore[arg-type]
            log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            db_pool_min=pool_min,
            db_pool_max=pool_max,
            db_pool_max_queries=_int(env, "DB_POOL_MAX_QUERIES", 50_000, low=1, high=100_000_000),
            db_pool_max_inactive_seconds=_seconds(env, "DB_POOL_MAX_INACTIVE_SECONDS", 300.0, high=86400),
            database_auth=auth.mode,
            database_password_file=auth.password_file,
            database_region=auth.region,
            database_secret_arn=auth.secret_arn,
            database_auth_retry_seconds=_seconds(env, "DATABASE_AUTH_RETRY_SECONDS", 5.0, high=300),
            db_ping_timeout_seconds=_seconds(env, "DB_PING_TIMEOUT_SECONDS", 1.0, high=60, low=0.05),
            ready_cache_seconds=_seconds(env, "READY_CACHE_SECONDS", 1.0, high=60),
            db_acquire_timeout_seconds=_seconds(env, "DB_ACQUIRE_TIMEOUT_SECONDS", 2.0, high=300, low=0.05),
            db_statement_timeout_seconds=_seconds(env, "DB_STATEMENT_TIMEOUT_SECONDS", 5.0, high=3600),
            db_command_timeout_seconds=_seconds(env, "DB_COMMAND_TIMEOUT_SECONDS", 6.0, high=3600, low=0.05),
            http_max_header_bytes=_int(env, "HTTP_MAX_HEADER_BYTES", 32 * 1024, low=1024, high=1024 * 1024),
            http_header_timeout_seconds=_seconds(env, "HTTP_HEADER_TIMEOUT_SECONDS", 10.0, high=600, low=0.1),
            http_body_timeout_seconds=_seconds(env, "HTTP_BODY_TIMEOUT_SECONDS", 10.0, high=600, low=0.1),
            http_max_connections=_int(env, "HTTP_MAX_CONNECTIONS", 2048, low=1, high=1_000_000),
            http_keep_alive_seconds=_seconds(env, "HTTP_KEEP_ALIVE_SECONDS", 75.0, high=4000, low=1),
        )


@dataclass(frozen=True)
class _Auth:
    mode: DatabaseAuth
    password_file: str = ""
    region: str = ""
    secret_arn: str = ""


def _database_auth(env: Mapping[str, str], url: str) -> _Auth:
    """DATABASE_AUTH and the variables its mode needs; in every mode but `url` the URL
    carries no password (it would be stale after the first rotation)."""
    mode: DatabaseAuth = _choice(env, "DATABASE_AUTH", "url", DATABASE_AUTH_MODES)  # type: ignore[assignment]
    if mode == "url":
        return _Auth(mode)
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
        return _Auth(mode, password_file=path)
    if mode == "iam":
        region = _region(env)
        if not user or len(hosts) != 1:
            raise ConfigError(
                "DATABASE_URL must name the user and exactly one host when DATABASE_AUTH is iam "
                "(an IAM token is signed for one host, port and user)"
            )
        return _Auth(mode, region=region)
    arn = _raw(env, "DATABASE_SECRET_ARN", "a Secrets Manager secret ARN") or ""
    if not _SECRET_ARN.match(arn):
        raise ConfigError(
            "DATABASE_SECRET_ARN must be a Secrets Manager secret ARN "
            f"(arn:aws:secretsmanager:<region>:<account>:secret:<name>) when DATABASE_AUTH is secrets-manager (got {arn!r})"
        )
    return _Auth(mode, secret_arn=arn)


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
