"""One ALB per color shared by several services: a host rule and a target group per service
(its targets, its health-check path), 404 `unknown_host` for a host no service claims, an
endpoint listener per service, an access log per service. The bootstrap, then a real Envoy
in front of real greeter processes (examples/greeter, run by the local deployer)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cutover.adapters.local_deployer import LocalDeployer
from cutover.envoy.alb import UNKNOWN_HOST_BODY, AlbBalancer, AlbService, AlbSpec, alb_bootstrap
from cutover.local.ports import free_port
from cutover.model import Color
from tests.pipelines.test_alb import running, wait_for

ADDRESS = "127.0.0.3"
GREETER_DIR = Path(__file__).resolve().parents[2] / "examples" / "greeter"


def shared_spec(directory: Path, *services: AlbService, color: str = "green") -> AlbSpec:
    return AlbSpec(
        color,  # type: ignore[arg-type]
        ADDRESS,
        free_port(ADDRESS),
        free_port(ADDRESS),
        (),
        directory,
        health_interval_seconds=0.3,
        health_timeout_seconds=0.25,
        services=services,
    )


def _manager(listener: dict[str, Any]) -> dict[str, Any]:
    manager: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


# -- the bootstrap (pure) ---------------------------------------------------------------


def test_each_service_has_a_host_rule_and_a_target_group_with_its_own_health_check(tmp_path: Path) -> None:
    spec = AlbSpec(
        "green", ADDRESS, 18080, 19901, (), tmp_path, health_interval_seconds=7,
        services=(
            AlbService("ledger", "ledger.example.com", (8001, 8002), endpoint_port=18081),
            AlbService("greeter", "greeter.example.com", (9001,), health_path="/readyz"),
        ),
    )  # fmt: skip
    document = alb_bootstrap(spec)
    clusters = {c["name"]: c for c in document["static_resources"]["clusters"]}
    assert set(clusters) == {"service-ledger", "service-greeter"}
    assert clusters["service-ledger"]["health_checks"][0]["http_health_check"] == {"path": "/health/ready"}
    assert clusters["service-greeter"]["health_checks"][0]["http_health_check"] == {"path": "/readyz"}
    assert clusters["service-greeter"]["health_checks"][0]["interval"] == "7.000s"
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in clusters["service-greeter"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert ports == [9001]

    main, endpoint = document["static_resources"]["listeners"]
    manager = _manager(main)
    hosts = manager["route_config"]["virtual_hosts"]
    assert [(h["name"], h["domains"]) for h in hosts] == [
        ("ledger", ["ledger.example.com", "green.ledger.example.com"]),
        ("greeter", ["greeter.example.com", "green.greeter.example.com"]),
        ("unknown_host", ["*"]),
    ]
    assert hosts[1]["routes"] == [
        {"match": {"prefix": "/"}, "route": {"cluster": "service-greeter", "timeout": "0s"}}
    ]
    (default,) = hosts[2]["routes"]
    assert default["direct_response"] == {"status": 404, "body": {"inline_string": UNKNOWN_HOST_BODY}}
    assert manager["strip_any_host_port"] is True
    # ledger's endpoint listener: every request to ledger, whatever its Host
    assert endpoint["address"]["socket_address"] == {"address": ADDRESS, "port_value": 18081}
    (only,) = _manager(endpoint)["route_config"]["virtual_hosts"]
    assert only["domains"] == ["*"] and only["routes"][0]["route"]["cluster"] == "service-ledger"
    # an access log for the ALB and one per service
    logs = [log["typed_config"]["path"] for log in manager["access_log"]]
    assert logs == [str(tmp_path / f"alb-green{suffix}-access.log") for suffix in ("", "-ledger", "-greeter")]


def test_a_single_service_spec_keeps_its_one_catch_all_host(tmp_path: Path) -> None:
    document = alb_bootstrap(AlbSpec("blue", "127.0.0.2", 18080, 19901, (8001,), tmp_path))
    (listener,) = document["static_resources"]["listeners"]
    (host,) = _manager(listener)["route_config"]["virtual_hosts"]
    assert host["domains"] == ["*"] and host["routes"][0]["route"]["cluster"] == "targets"
    assert "strip_any_host_port" not in _manager(listener)


@pytest.mark.parametrize(
    ("services", "targets", "says"),
    [
        ((AlbService("a", "a.example.com", (1,)),), (8001,), "leave `targets` empty"),
        ((AlbService("a", "a.example.com", (1,)), AlbService("a", "b.example.com", (2,))), (), "name a"),
        ((AlbService("a", "x.example.com", (1,)), AlbService("b", "x.example.com", (2,))), (), "domain"),
        ((AlbService("a", "a.example.com", (1,)), AlbService("b", "b.example.com", (1,))), (), "target port"),
        ((AlbService("a", "a.example.com", (1,), endpoint_port=18080),), (), "must differ"),
    ],
)
def test_services_that_would_collide_are_refused(
    tmp_path: Path, services: tuple[AlbService, ...], targets: tuple[int, ...], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        AlbSpec("blue", "127.0.0.2", 18080, 19901, targets, tmp_path, services=services)


@pytest.mark.parametrize(
    ("name", "domain", "targets", "health_path"),
    [
        ("Ledger", "ledger.example.com", (8001,), "/ready"),
        ("ledger", "ledger", (8001,), "/ready"),
        ("ledger", "*.example.com", (8001,), "/ready"),
        ("ledger", "ledger.example.com", (), "/ready"),
        ("ledger", "ledger.example.com", (8001,), "ready"),
    ],
)
def test_a_bad_service_is_refused(name: str, domain: str, targets: tuple[int, ...], health_path: str) -> None:
    with pytest.raises(ValueError):
        AlbService(name, domain, targets, health_path=health_path)


# -- a real Envoy in front of real greeter processes ----------------------------------


@contextlib.contextmanager
def greeters(directory: Path, image: str, instances: int) -> Iterator[LocalDeployer]:
    """`instances` greeter processes as the color green, running `image`, stopped by pid."""
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(GREETER_DIR), os.environ.get("PYTHONPATH")])),
        "DRAIN_SECONDS": "0.2",
        "SHUTDOWN_TIMEOUT_SECONDS": "1",
    }
    ports: dict[Color, list[int]] = {"green": [free_port() for _ in range(instances)]}
    deployer = LocalDeployer(
        directory, ports, env, command=[sys.executable, "-m", "greeter"], live_path="/livez"
    )
    try:
        deployer.deploy("green", image, lambda _line: None)  # a failed deploy's processes are stopped too
        yield deployer
    finally:
        deployer.stop("green")


def _logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def shared_alb(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[AlbBalancer, dict[str, list[int]]]]:
    """green's ALB for three services: `hello` (greeter v-hello) and `greeter` (greeter
    v-greeter), health-checked on /readyz, and `broken` (greeter too) checked on a path it
    does not have, so its targets never pass."""
    root = tmp_path_factory.mktemp("shared-alb")
    with (
        greeters(root / "hello", "v-hello", 2) as hello,
        greeters(root / "greeter", "v-greeter", 1) as second,
        greeters(root / "broken", "v-broken", 1) as broken,
    ):
        ports = {
            "hello": hello.ports["green"],
            "greeter": second.ports["green"],
            "broken": broken.ports["green"],
        }
        spec = shared_spec(
            root / "alb",
            AlbService("hello", "hello.example.com", tuple(ports["hello"]), "/readyz", free_port(ADDRESS)),
            AlbService("greeter", "greeter.example.com", tuple(ports["greeter"]), "/readyz"),
            AlbService("broken", "broken.example.com", tuple(ports["broken"]), "/health/ready"),
        )
        with running(spec) as alb:
            alb.wait_healthy([*ports["hello"], *ports["greeter"]])
            yield alb, ports


def _hello(alb: AlbBalancer, host: str, url: str | None = None) -> httpx.Response:
    return httpx.get(f"{url or alb.url}/hello", headers={"Host": host}, timeout=5)


def test_each_host_reaches_its_own_services_targets(
    shared_alb: tuple[AlbBalancer, dict[str, list[int]]],
) -> None:
    alb, _ports = shared_alb
    for host, version in [
        ("hello.example.com", "v-hello"),
        ("green.hello.example.com", "v-hello"),
        ("HELLO.example.com:443", "v-hello"),  # a host name is case-blind; the port is not the rule's
        ("greeter.example.com", "v-greeter"),
        ("green.greeter.example.com", "v-greeter"),
    ]:
        answers = [_hello(alb, host) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4, (host, answers[0].text)
        assert {a.json()["version"] for a in answers} == {version}, host


def test_a_host_no_service_claims_gets_404_unknown_host(
    shared_alb: tuple[AlbBalancer, dict[str, list[int]]],
) -> None:
    alb, _ports = shared_alb
    for host in [
        "scanner.example.net",
        "blue.hello.example.com",
        "example.com",
        ADDRESS,
        "hello.example.com.evil",
    ]:
        answer = _hello(alb, host)
        assert answer.status_code == 404, host
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["code"] == "unknown_host", host
        assert "x-served-by" not in answer.headers  # no target saw it


def test_each_service_is_health_checked_on_its_own_path(
    shared_alb: tuple[AlbBalancer, dict[str, list[int]]],
) -> None:
    alb, ports = shared_alb
    health = alb.target_health()
    assert all(health[port] for port in ports["hello"] + ports["greeter"])  # /readyz answers 200
    # greeter has no /health/ready: the service checked there never gets a healthy target
    assert health[ports["broken"][0]] is False
    answer = _hello(alb, "broken.example.com")
    assert answer.status_code == 503 and "x-served-by" not in answer.headers


def test_a_services_endpoint_listener_reaches_it_whatever_the_host(
    shared_alb: tuple[AlbBalancer, dict[str, list[int]]],
) -> None:
    alb, _ports = shared_alb
    url = alb.service_url("hello")
    for host in ["greeter.example.com", ADDRESS, "anything"]:
        answer = _hello(alb, host, url)
        assert answer.status_code == 200 and answer.json()["version"] == "v-hello", host
    with pytest.raises(KeyError, match="no endpoint_port"):
        alb.service_url("greeter")


def test_each_service_has_an_access_log_of_its_own_requests(
    shared_alb: tuple[AlbBalancer, dict[str, list[int]]],
) -> None:
    alb, ports = shared_alb
    paths = {name: alb.spec.service_access_log_path(name) for name in ("hello", "greeter", "broken")}
    time.sleep(0.3)  # what earlier tests asked is flushed (every 0.1 s)
    before = {name: len(_logged(path)) for name, path in paths.items()}
    everything = len(_logged(alb.spec.access_log_path))
    assert _hello(alb, "greeter.example.com").status_code == 200
    assert _hello(alb, "green.greeter.example.com:8443").status_code == 200
    assert _hello(alb, "nobody.example.com").status_code == 404
    wait_for(
        lambda: len(_logged(alb.spec.access_log_path)) >= everything + 3, 5, "the ALB's log has all three"
    )
    time.sleep(0.3)  # one more flush
    after = {name: _logged(path)[before[name] :] for name, path in paths.items()}
    assert len(after["greeter"]) == 2
    assert {line["upstream_host"] for line in after["greeter"]} == {f"127.0.0.1:{ports['greeter'][0]}"}
    assert after["hello"] == [] and after["broken"] == []  # neither the other service's nor the 404
    assert alb.last_request_at("greeter") is not None
