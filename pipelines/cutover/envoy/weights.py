"""A real Envoy in front of the local colors: its bootstrap, its route file, its health view.

Layout (one Envoy, three listeners):
- the service listener: weighted clusters `ledger-blue` / `ledger-green`, with two-level
  session affinity: a `ledger-color` cookie keeps a session on its color while that color
  has weight, and Envoy's stateful-session cookie (`ledger-instance`) keeps it on one
  instance while that instance passes its health check;
- one listener per color (the analogue of `blue.<domain>`), so the idle color can be
  tested before it takes traffic.
Clusters are static; only the routes change. They are read from `rds.json` through a
file-based xDS subscription: a change is written to a temporary file and renamed over it
(atomic), and Envoy's admin interface confirms the version it serves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cutover.local.process import wait_until
from cutover.model import COLORS, Color, Traffic

COLOR_COOKIE = "ledger-color"
INSTANCE_COOKIE = "ledger-instance"
ROUTE_NAME = "ledger"
_ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


@dataclass(frozen=True)
class EnvoyLayout:
    """Ports and files of one Envoy. `upstreams` are the color's instance ports."""

    directory: Path
    listen_port: int
    admin_port: int
    color_ports: dict[Color, int]
    upstreams: dict[Color, list[int]]
    health_interval: float = 0.5

    @property
    def rds_path(self) -> Path:
        return self.directory / "rds.json"

    @property
    def bootstrap_path(self) -> Path:
        return self.directory / "envoy.json"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def color_url(self, color: Color) -> str:
        return f"http://127.0.0.1:{self.color_ports[color]}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "listen_port": self.listen_port,
            "admin_port": self.admin_port,
            "color_ports": self.color_ports,
            "upstreams": self.upstreams,
            "health_interval": self.health_interval,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base: Path | None = None) -> EnvoyLayout:
        directory = Path(raw["directory"])
        if base is not None and not directory.is_absolute():
            directory = base / directory
        return cls(
            directory,
            int(raw["listen_port"]),
            int(raw["admin_port"]),
            {c: int(raw["color_ports"][c]) for c in COLORS},
            {c: [int(p) for p in raw["upstreams"][c]] for c in COLORS},
            float(raw.get("health_interval", 0.5)),
        )


def _cluster(color: Color, ports: list[int], health_interval: float) -> dict[str, Any]:
    interval = f"{health_interval:g}s"
    return {
        "name": f"ledger-{color}",
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": f"ledger-{color}",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}
                            }
                        }
                        for p in ports
                    ]
                }
            ],
        },
        "health_checks": [
            {
                "timeout": "0.5s",
                "interval": interval,
                "no_traffic_interval": interval,  # the idle color too: it must be known healthy before it gets traffic
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "http_health_check": {"path": "/health/ready"},
            }
        ],
        # Never send traffic to an unhealthy instance, even when most are unhealthy.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        # Close idle upstream connections before ledger does (uvicorn: 5 s), so Envoy
        # never writes a request into a connection the server is closing.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": "3s"},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }


_RETRY = {
    # Safe for every method here: transfers carry idempotency keys.
    "retry_on": "connect-failure,refused-stream,reset",
    "num_retries": 3,
    "per_try_timeout": "10s",
}


def _http_filters(sticky: bool) -> list[dict[str, Any]]:
    filters = []
    if sticky:
        filters.append(
            {
                "name": "envoy.filters.http.stateful_session",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
                    "session_state": {
                        "name": "envoy.http.stateful_session.cookie",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState",
                            "cookie": {"name": INSTANCE_COOKIE, "path": "/"},
                        },
                    },
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    return filters


def _listener(name: str, port: int, route: dict[str, Any], sticky: bool) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": name,
                            **route,
                            "http_filters": _http_filters(sticky),
                        },
                    }
                ]
            }
        ],
    }


def bootstrap(layout: EnvoyLayout) -> dict[str, Any]:
    """Envoy's static bootstrap: admin, clusters, listeners; the service routes come from RDS."""
    rds = {
        "rds": {
            "route_config_name": ROUTE_NAME,
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(layout.rds_path),
                    "watched_directory": {"path": str(layout.directory)},
                },
            },
        }
    }
    listeners = [_listener("service", layout.listen_port, rds, sticky=True)]
    for color in COLORS:
        direct = {
            "route_config": {
                "name": f"direct-{color}",
                "virtual_hosts": [
                    {
                        "name": color,
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "route": {"cluster": f"ledger-{color}", "retry_policy": _RETRY},
                            }
                        ],
                    }
                ],
            }
        }
        listeners.append(_listener(f"direct-{color}", layout.color_ports[color], direct, sticky=False))
    return {
        "node": {"id": "cutover-rehearsal", "cluster": "cutover"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": layout.admin_port}}},
        "static_resources": {
            "clusters": [_cluster(c, layout.upstreams[c], layout.health_interval) for c in COLORS],
            "listeners": listeners,
        },
    }


def route_configuration(traffic: Traffic) -> dict[str, Any]:
    """The service routes for `traffic`: sessions stay on their color while it has weight."""
    routes: list[dict[str, Any]] = []
    for color in COLORS:
        if traffic.weight(color) > 0:
            routes.append(
                {
                    "name": f"session-on-{color}",
                    "match": {
                        "prefix": "/",
                        "headers": [
                            {
                                "name": "cookie",
                                "string_match": {
                                    "safe_regex": {"regex": f"(^|.*;\\s*){COLOR_COOKIE}={color}(;.*|$)"}
                                },
                            }
                        ],
                    },
                    "route": {"cluster": f"ledger-{color}", "retry_policy": _RETRY},
                }
            )
    weighted = [
        {
            "name": f"ledger-{color}",
            "weight": traffic.weight(color),
            "response_headers_to_add": [
                {
                    "header": {
                        "key": "set-cookie",
                        "value": f"{COLOR_COOKIE}={color}; Path=/; HttpOnly; SameSite=Lax",
                    },
                    "append_action": "APPEND_IF_EXISTS_OR_ADD",
                }
            ],
        }
        for color in COLORS
        if traffic.weight(color) > 0
    ]
    routes.append(
        {
            "name": "new-session",
            "match": {"prefix": "/"},
            "route": {"weighted_clusters": {"clusters": weighted}, "retry_policy": _RETRY},
        }
    )
    return {
        "@type": _ROUTE_TYPE,
        "name": ROUTE_NAME,
        "virtual_hosts": [{"name": "ledger", "domains": ["*"], "routes": routes}],
    }


def write_routes(layout: EnvoyLayout, traffic: Traffic) -> None:
    """Write the route file for `traffic` atomically; version_info is the generation."""
    layout.directory.mkdir(parents=True, exist_ok=True)
    document = {"version_info": str(traffic.generation), "resources": [route_configuration(traffic)]}
    tmp = layout.rds_path.with_name(f".rds.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, layout.rds_path)


def served_version(layout: EnvoyLayout, timeout: float = 2.0) -> str | None:
    """The route version Envoy serves right now, from its admin interface."""
    answer = httpx.get(
        f"{layout.admin_url}/config_dump", params={"resource": "dynamic_route_configs"}, timeout=timeout
    )
    answer.raise_for_status()
    for config in answer.json().get("configs", []):
        if config.get("route_config", {}).get("name") == ROUTE_NAME:
            return str(config.get("version_info"))
    return None


def host_health(clusters: dict[str, Any]) -> dict[int, bool]:
    """Upstream port -> healthy, from Envoy's `/clusters?format=json`."""
    health: dict[int, bool] = {}
    for cluster in clusters.get("cluster_statuses", []):
        for host in cluster.get("host_statuses", []):
            status = host.get("health_status", {})
            healthy = status.get("eds_health_status") == "HEALTHY" and not any(
                key.startswith("failed") and value for key, value in status.items()
            )
            health[int(host["address"]["socket_address"]["port_value"])] = healthy
    return health


def wait_healthy(layout: EnvoyLayout, ports: list[int], timeout: float = 30.0) -> None:
    """Until Envoy's health checks pass for every one of `ports`."""

    def healthy() -> bool:
        try:
            clusters = httpx.get(f"{layout.admin_url}/clusters", params={"format": "json"}, timeout=1).json()
        except (httpx.HTTPError, ValueError):
            return False
        health = host_health(clusters)
        return all(health.get(port) for port in ports)

    wait_until(healthy, timeout, what=f"envoy seeing {ports} healthy")
