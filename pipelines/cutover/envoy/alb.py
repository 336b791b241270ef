"""One Envoy per color, configured the way an AWS Application Load Balancer behaves.

What it models (CLOUD-FACTS.md, "Application Load Balancer"):
- one idle timeout (default 60 s) toward clients and toward targets, so a target whose
  keep-alive is shorter than it gets a request on a connection it is closing (the ALB 502);
- no retries: a request sent to a target is not sent again (no retry policy; a client's
  `x-envoy-retry-*` headers do not make it retry either);
- a target that closes or resets the connection before answering, or refuses it: 502
  (Envoy's own answer is 503 with flag UC/UR/UF);
- no request timeout, only the idle one (Envoy's stream idle timeout, flag SI, which Envoy
  answers 408 or 504 as an ALB does; not exercised by the tests);
- `lb_cookie` stickiness: the cookie (`AWSALB`) keeps a client on one target while that
  target passes its health checks, and moves it when it does not;
- active health checks on `health_path` with the spec's interval, timeout and thresholds,
  also while no traffic flows; an unhealthy target gets nothing (no panic routing);
- an access log of JSON lines under `directory` (the analogue of ALB access logs).
Several services share one ALB per color (`AlbSpec.services`, infra's components/service.py):
- a virtual host per service, matching its domain and `<color>.<domain>` (the port ignored), in
  front of the service's own cluster (its targets, its health-check path): the host rule and
  the target group; a host no service claims gets the listener's default, 404
  `{"error":{"code":"unknown_host",...}}`;
- `endpoint_port`, when set: a listener of the service's own on the ALB's address, whose every
  request goes to that service, as `https://<color>.<domain>` would (no resolver here knows
  that name: the health gates use this URL);
- an access log per service besides the ALB's (the analogue of the target group's metrics).
A spec without `services` is the single-service ALB: every host reaches `targets`.
Not modelled: the deregistration delay (targets here are a fixed list; a draining target
is one that fails its health checks while ledger drains) and an ALB's fail-open when every
target is unhealthy (docs/rehearsal.md).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cutover.envoy.process import STOP_GRACE_SECONDS, launch
from cutover.envoy.weights import host_health
from cutover.local.process import HttpProbe, LocalProcess, NotReady, tcp_probe, wait_until
from cutover.model import Color

CLUSTER = "targets"
STAT_PREFIX = "alb"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Envoy's answers when the target closed, reset or refused the connection before answering.
TARGET_CONNECTION_FLAGS = ("UC", "UR", "UF")
_TAIL_BYTES = 64 * 1024
UNKNOWN_HOST_BODY = '{"error":{"code":"unknown_host","message":"no service answers this host"}}'
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_DOMAIN = re.compile(r"^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class AlbService:
    """One service behind a shared ALB: its host rule, its target group and health check."""

    name: (
        str  # e.g. "greeter": its cluster is `service-<name>`, its access log `alb-<color>-<name>-access.log`
    )
    domain: str  # the host rule matches it and `<color>.<domain>`
    targets: tuple[int, ...]  # ports on 127.0.0.1
    health_path: str = "/health/ready"
    endpoint_port: int | None = None  # a listener of its own (`<color>.<domain>` without DNS)

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.match(self.name):
            raise ValueError(f"service name {self.name!r} must be lowercase letters, digits or '-' (1-32)")
        if not _DOMAIN.match(self.domain):
            raise ValueError(
                f"service {self.name}: domain {self.domain!r} is not a DNS name like app.example.com"
            )
        if not self.targets or not all(0 < port < 65536 for port in self.targets):
            raise ValueError(f"service {self.name}: targets must be TCP ports (got {self.targets!r})")
        if not self.health_path.startswith("/"):
            raise ValueError(f"service {self.name}: health_path must start with / (got {self.health_path!r})")

    @property
    def cluster(self) -> str:
        return f"service-{self.name}"

    def hosts(self, color: Color) -> list[str]:
        """The Host header values its rule matches on `color`'s ALB."""
        return [self.domain, f"{color}.{self.domain}"]


@dataclass(frozen=True)
class AlbSpec:
    """One color's load balancer: where it listens, its targets, and the ALB settings."""

    color: Color
    address: str
    port: int
    admin_port: int
    targets: tuple[int, ...]
    directory: Path
    idle_timeout_seconds: float = 60.0
    health_path: str = "/health/ready"
    health_interval_seconds: float = 5.0
    health_timeout_seconds: float = 2.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2
    stickiness_cookie: str = "AWSALB"
    stickiness_seconds: int = 86400
    services: tuple[AlbService, ...] = ()  # shared by several services: `targets` stays empty

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.address)
        except ValueError:
            raise ValueError(f"ALB address {self.address!r} is not an IP address") from None
        if address.version != 4 or address not in LOOPBACK:
            raise ValueError(
                f"ALB address {self.address} is outside 127.0.0.0/8: the local ALB listens on loopback only"
            )
        if not 1 <= self.idle_timeout_seconds <= 4000:
            raise ValueError(f"idle timeout {self.idle_timeout_seconds:g}s is outside 1-4000 s (ALB's range)")
        if not 1 <= self.stickiness_seconds <= 7 * 86400:
            raise ValueError(f"stickiness duration {self.stickiness_seconds}s is outside 1 s to 7 days")
        if self.health_interval_seconds <= 0 or self.health_timeout_seconds <= 0:
            raise ValueError("the health check interval and timeout must be positive")
        if self.services:
            self._check_services()

    def _check_services(self) -> None:
        if self.targets:
            raise ValueError("an ALB shared by services takes its targets per service: leave `targets` empty")
        checks: list[tuple[str, list[str]]] = [
            ("name", [s.name for s in self.services]),
            ("domain", [s.domain for s in self.services]),
            ("target port", [str(p) for s in self.services for p in s.targets]),
        ]
        for what, values in checks:
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"two services of the {self.color} ALB share the {what} {repeated[0]}")
        ports = [self.port, self.admin_port, *(s.endpoint_port for s in self.services if s.endpoint_port)]
        if len(set(ports)) != len(ports):
            raise ValueError(
                f"the {self.color} ALB's listener, admin and endpoint ports must differ (got {ports})"
            )

    def service(self, name: str) -> AlbService:
        """The service called `name` (KeyError naming the known ones)."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(
            f"the {self.color} ALB has no service {name!r} (has: {', '.join(s.name for s in self.services)})"
        )

    def service_access_log_path(self, name: str) -> Path:
        """The access log of one service's requests (its target group's traffic)."""
        return self.directory / f"alb-{self.color}-{self.service(name).name}-access.log"

    @property
    def bootstrap_path(self) -> Path:
        return self.directory / f"alb-{self.color}.json"

    @property
    def access_log_path(self) -> Path:
        return self.directory / f"alb-{self.color}-access.log"

    @property
    def log_path(self) -> Path:
        return self.directory / f"alb-{self.color}-envoy.log"


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _cluster(spec: AlbSpec, name: str, targets: tuple[int, ...], health_path: str) -> dict[str, Any]:
    """One target group: its targets, its health check, the ALB's idle timeout toward them."""
    interval = _duration(spec.health_interval_seconds)
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        for port in targets
    ]
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",  # ALB's connection timeout toward a target
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
        "health_checks": [
            {
                "timeout": _duration(spec.health_timeout_seconds),
                "interval": interval,
                "no_traffic_interval": interval,
                "unhealthy_threshold": spec.unhealthy_threshold,
                "healthy_threshold": spec.healthy_threshold,
                "http_health_check": {"path": health_path},
            }
        ],
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                # The ALB keeps an idle target connection for its idle timeout, however short
                # the target's keep-alive is: that is the trap this model must show.
                "common_http_protocol_options": {"idle_timeout": _duration(spec.idle_timeout_seconds)},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }


def _http_filters(spec: AlbSpec) -> list[dict[str, Any]]:
    return [
        {
            "name": "envoy.filters.http.stateful_session",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
                "session_state": {
                    "name": "envoy.http.stateful_session.cookie",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState",
                        "cookie": {
                            "name": spec.stickiness_cookie,
                            "path": "/",
                            "ttl": f"{spec.stickiness_seconds}s",
                        },
                    },
                },
            },
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        },
    ]


def _access_log(path: Path, host_filter: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-lines file access log; with `host_filter`, only the requests it matches."""
    log: dict[str, Any] = {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {
                "json_format": {
                    "start_time": "%START_TIME(%s.%6f)%",
                    "status": "%RESPONSE_CODE%",
                    "flags": "%RESPONSE_FLAGS%",
                    "upstream_host": "%UPSTREAM_HOST%",
                    "method": "%REQ(:METHOD)%",
                    "path": "%REQ(:PATH)%",
                    "duration_ms": "%DURATION%",
                }
            },
        },
    }
    if host_filter is not None:
        log["filter"] = host_filter
    return log


def _host_filter(service: AlbService, color: Color) -> dict[str, Any]:
    """Requests whose Host is one the service's rule matches (any port), as Envoy routes them:
    what the rule sends to the service's target group, never what a client's header claims."""
    hosts = "|".join(re.escape(host) for host in service.hosts(color))
    regex = f"(?i)^({hosts})(:[0-9]+)?$"
    return {
        "header_filter": {"header": {"name": ":authority", "string_match": {"safe_regex": {"regex": regex}}}}
    }


def _local_reply_config() -> dict[str, Any]:
    return {
        "mappers": [
            {
                "filter": {"response_flag_filter": {"flags": list(TARGET_CONNECTION_FLAGS)}},
                "status_code": 502,
            }
        ]
    }


def _forward(cluster: str) -> list[dict[str, Any]]:
    # No retry_policy anywhere; no whole-request timeout (the idle one applies).
    return [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}]


def _unknown_host() -> dict[str, Any]:
    """The listener's default action: a host no service claims."""
    return {
        "name": "unknown_host",
        "domains": ["*"],
        "routes": [
            {
                "match": {"prefix": "/"},
                "direct_response": {"status": 404, "body": {"inline_string": UNKNOWN_HOST_BODY}},
                "response_headers_to_add": [
                    {
                        "header": {"key": "content-type", "value": "application/json"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            }
        ],
    }


def _virtual_hosts(spec: AlbSpec) -> list[dict[str, Any]]:
    if not spec.services:
        return [{"name": spec.color, "domains": ["*"], "routes": _forward(CLUSTER)}]
    rules = [
        {"name": service.name, "domains": service.hosts(spec.color), "routes": _forward(service.cluster)}
        for service in spec.services
    ]
    return [*rules, _unknown_host()]


def _manager(
    spec: AlbSpec, stat_prefix: str, virtual_hosts: list[dict[str, Any]], logs: list[dict[str, Any]]
) -> dict[str, Any]:
    idle = _duration(spec.idle_timeout_seconds)
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        # The edge: the client's address is the connection's, appended to x-forwarded-for
        # as an ALB does.
        "use_remote_address": True,
        "common_http_protocol_options": {"idle_timeout": idle},
        "stream_idle_timeout": idle,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "access_log": logs,
        "local_reply_config": _local_reply_config(),
        "route_config": {"name": f"alb-{spec.color}", "virtual_hosts": virtual_hosts},
        "http_filters": _http_filters(spec),
    }
    if spec.services:
        manager["strip_any_host_port"] = True  # a host rule matches the host name, whatever the port
    return manager


def _socket_listener(name: str, address: str, port: int, manager: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _listeners(spec: AlbSpec) -> list[dict[str, Any]]:
    """The ALB's listener; per service with an `endpoint_port`, the listener standing in for
    `<color>.<domain>` (every request to that service, logged as its own and the ALB's)."""
    logs = [_access_log(spec.access_log_path)] + [
        _access_log(spec.service_access_log_path(s.name), _host_filter(s, spec.color)) for s in spec.services
    ]
    listeners = [
        _socket_listener(
            f"alb-{spec.color}",
            spec.address,
            spec.port,
            _manager(spec, STAT_PREFIX, _virtual_hosts(spec), logs),
        )
    ]
    for service in spec.services:
        if service.endpoint_port is None:
            continue
        every_host = [{"name": service.name, "domains": ["*"], "routes": _forward(service.cluster)}]
        own_logs = [
            _access_log(spec.access_log_path),
            _access_log(spec.service_access_log_path(service.name)),
        ]
        manager = _manager(
            spec, f"{STAT_PREFIX}_{service.name.replace('-', '_')}_endpoint", every_host, own_logs
        )
        listeners.append(
            _socket_listener(f"alb-{spec.color}-{service.name}", spec.address, service.endpoint_port, manager)
        )
    return listeners


def _clusters(spec: AlbSpec) -> list[dict[str, Any]]:
    if not spec.services:
        return [_cluster(spec, CLUSTER, spec.targets, spec.health_path)]
    return [_cluster(spec, s.cluster, s.targets, s.health_path) for s in spec.services]


def alb_bootstrap(spec: AlbSpec) -> dict[str, Any]:
    """The Envoy bootstrap document for `spec` (pure: writes nothing)."""
    return {
        "node": {"id": f"alb-{spec.color}", "cluster": "cutover"},
        "admin": {"address": {"socket_address": {"address": spec.address, "port_value": spec.admin_port}}},
        "static_resources": {"clusters": _clusters(spec), "listeners": _listeners(spec)},
    }


class AlbBalancer:
    """The Envoy process of one `AlbSpec`: started, observed and stopped by its pid."""

    def __init__(self, spec: AlbSpec) -> None:
        self.spec = spec
        self.process: LocalProcess | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def url(self) -> str:
        return f"http://{self.spec.address}:{self.spec.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.spec.address}:{self.spec.admin_port}"

    def service_url(self, name: str) -> str:
        """The URL standing in for `https://<color>.<domain>` of service `name` (its endpoint
        listener): what its health gates reach."""
        service = self.spec.service(name)
        if service.endpoint_port is None:
            raise KeyError(f"service {name!r} of the {self.spec.color} ALB has no endpoint_port")
        return f"http://{self.spec.address}:{service.endpoint_port}"

    def start(self, timeout: float = 20.0) -> None:
        """Write the bootstrap, start Envoy, and wait until its admin and listener answer."""
        self.spec.directory.mkdir(parents=True, exist_ok=True)
        self.spec.bootstrap_path.write_text(json.dumps(alb_bootstrap(self.spec)))
        self.process = launch(
            self.spec.bootstrap_path,
            None,
            self.spec.log_path,
            extra_args=("--file-flush-interval-msec", "100"),  # access log lines show up quickly
        )
        admin = HttpProbe(f"{self.admin_url}/ready", timeout=0.5)
        ports = [self.spec.port, *(s.endpoint_port for s in self.spec.services if s.endpoint_port)]
        listeners = [tcp_probe(self.spec.address, port) for port in ports]
        try:
            self.process.wait_ready(
                lambda: admin() and all(listener() for listener in listeners),
                timeout,
                what=f"the {self.spec.color} ALB listening on {self.url}",
            )
        except NotReady:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM to the pid, SIGKILL if it has not exited after a grace period."""
        if self.process is not None:
            self.process.stop(grace=STOP_GRACE_SECONDS)

    def request_count(self) -> int:
        """Client requests answered so far on its listener (the ALB's RequestCount; not the
        services' endpoint listeners): Envoy's admin stats."""
        name = f"http.{STAT_PREFIX}.downstream_rq_completed"
        answer = httpx.get(
            f"{self.admin_url}/stats", params={"filter": f"^{name}$", "format": "json"}, timeout=2
        )
        answer.raise_for_status()
        for stat in answer.json().get("stats", []):
            if stat.get("name") == name:
                return int(stat["value"])
        return 0

    def target_health(self) -> dict[int, bool]:
        """Target port -> healthy in Envoy's eyes (its active health checks)."""
        answer = httpx.get(f"{self.admin_url}/clusters", params={"format": "json"}, timeout=2)
        answer.raise_for_status()
        return host_health(answer.json())

    def wait_healthy(self, ports: Iterable[int], timeout: float = 20.0) -> None:
        """Until Envoy sees every one of `ports` healthy."""
        wanted = list(ports)
        wait_until(
            lambda: self._healthy(wanted), timeout, what=f"the {self.spec.color} ALB seeing {wanted} healthy"
        )

    def _healthy(self, ports: list[int]) -> bool:
        try:
            health = self.target_health()
        except (httpx.HTTPError, ValueError):
            return False
        return all(health.get(port) for port in ports)

    def last_request_at(self, service: str | None = None) -> float | None:
        """Wall-clock epoch seconds of the newest request in the access log (the ALB's, or
        `service`'s); None if none."""
        path = self.spec.access_log_path if service is None else self.spec.service_access_log_path(service)
        try:
            with path.open("rb") as log:
                size = log.seek(0, 2)
                log.seek(max(0, size - _TAIL_BYTES))
                tail = log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        newest: float | None = None
        for line in tail.splitlines():
            try:
                started = float(json.loads(line)["start_time"])
            except (ValueError, KeyError, TypeError):
                continue  # the first line of the tail may be cut
            newest = started if newest is None else max(newest, started)
        return newest
