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
Not modelled: the deregistration delay (targets here are a fixed list; a draining target
is one that fails its health checks while ledger drains) and an ALB's fail-open when every
target is unhealthy (docs/rehearsal.md).
"""

from __future__ import annotations

import ipaddress
import json
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


def _cluster(spec: AlbSpec) -> dict[str, Any]:
    interval = _duration(spec.health_interval_seconds)
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        for port in spec.targets
    ]
    return {
        "name": CLUSTER,
        "type": "STATIC",
        "connect_timeout": "10s",  # ALB's connection timeout toward a target
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": CLUSTER, "endpoints": [{"lb_endpoints": endpoints}]},
        "health_checks": [
            {
                "timeout": _duration(spec.health_timeout_seconds),
                "interval": interval,
                "no_traffic_interval": interval,
                "unhealthy_threshold": spec.unhealthy_threshold,
                "healthy_threshold": spec.healthy_threshold,
                "http_health_check": {"path": spec.health_path},
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


def _access_log(spec: AlbSpec) -> dict[str, Any]:
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(spec.access_log_path),
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


def _local_reply_config() -> dict[str, Any]:
    return {
        "mappers": [
            {
                "filter": {"response_flag_filter": {"flags": list(TARGET_CONNECTION_FLAGS)}},
                "status_code": 502,
            }
        ]
    }


def _listener(spec: AlbSpec) -> dict[str, Any]:
    idle = _duration(spec.idle_timeout_seconds)
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": STAT_PREFIX,
        # The edge: the client's address is the connection's, appended to x-forwarded-for
        # as an ALB does.
        "use_remote_address": True,
        "common_http_protocol_options": {"idle_timeout": idle},
        "stream_idle_timeout": idle,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "access_log": [_access_log(spec)],
        "local_reply_config": _local_reply_config(),
        "route_config": {
            "name": f"alb-{spec.color}",
            "virtual_hosts": [
                {
                    "name": spec.color,
                    "domains": ["*"],
                    # No retry_policy anywhere; no whole-request timeout (the idle one applies).
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": CLUSTER, "timeout": "0s"}}],
                }
            ],
        },
        "http_filters": _http_filters(spec),
    }
    return {
        "name": f"alb-{spec.color}",
        "address": {"socket_address": {"address": spec.address, "port_value": spec.port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def alb_bootstrap(spec: AlbSpec) -> dict[str, Any]:
    """The Envoy bootstrap document for `spec` (pure: writes nothing)."""
    return {
        "node": {"id": f"alb-{spec.color}", "cluster": "cutover"},
        "admin": {"address": {"socket_address": {"address": spec.address, "port_value": spec.admin_port}}},
        "static_resources": {"clusters": [_cluster(spec)], "listeners": [_listener(spec)]},
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
        listener = tcp_probe(self.spec.address, self.spec.port)
        try:
            self.process.wait_ready(
                lambda: admin() and listener(),
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
        """Client requests answered so far (the ALB's RequestCount): Envoy's admin stats."""
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

    def last_request_at(self) -> float | None:
        """Wall-clock epoch seconds of the newest request in the access log; None if none."""
        try:
            with self.spec.access_log_path.open("rb") as log:
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
