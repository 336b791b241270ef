"""The ALB-shaped Envoy: its bootstrap, and a real Envoy in front of real ledger processes
(stickiness, health checks, the 502 of a target that drops the connection, the counters)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from cutover.adapters.local_deployer import LocalDeployer
from cutover.envoy.alb import AlbBalancer, AlbSpec, alb_bootstrap
from cutover.local.database import migrate_database
from cutover.local.ports import free_port
from cutover.local.postgres import EmbeddedPostgres

ADDRESS = "127.0.0.2"  # Linux routes all of 127.0.0.0/8 to lo: the ALB has an address of its own


def spec_for(directory: Path, targets: tuple[int, ...], **overrides: Any) -> AlbSpec:
    """A spec with health checks fast enough for a test (the ALB minimums are 5 s and 2 s)."""
    settings: dict[str, Any] = {
        "health_interval_seconds": 0.5,
        "health_timeout_seconds": 0.25,
        **overrides,
    }
    return AlbSpec("blue", ADDRESS, free_port(ADDRESS), free_port(ADDRESS), targets, directory, **settings)


@contextlib.contextmanager
def ledger_color(
    postgres: EmbeddedPostgres, directory: Path, instances: int, extra_env: Mapping[str, str] | None = None
) -> Iterator[LocalDeployer]:
    """`instances` real ledger processes as the color blue, stopped (by pid) on exit."""
    database = postgres.create_database(f"alb_{directory.name[-8:].lower()}_{os.getpid()}")
    migrate_database(database)
    app_env = {
        "DATABASE_URL": database,
        "DRAIN_SECONDS": "2",
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    deployer = LocalDeployer(directory / "colors", {"blue": [free_port() for _ in range(instances)]}, app_env)
    deployer.deploy("blue", "v1", lambda _line: None)
    try:
        yield deployer
    finally:
        deployer.stop("blue")


@contextlib.contextmanager
def running(spec: AlbSpec) -> Iterator[AlbBalancer]:
    balancer = AlbBalancer(spec)
    balancer.start()
    try:
        yield balancer
    finally:
        balancer.stop()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.05)


def _keys(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from _keys(value)
    elif isinstance(document, list):
        for item in document:
            yield from _keys(item)


# -- the bootstrap (pure) ---------------------------------------------------------------


def test_the_bootstrap_uses_the_specs_timeouts_and_never_retries(tmp_path: Path) -> None:
    spec = AlbSpec(
        "green", "127.0.0.3", 18080, 19901, (8001, 8002), tmp_path, idle_timeout_seconds=42,
        health_interval_seconds=7, health_timeout_seconds=3, healthy_threshold=4, unhealthy_threshold=3,
        stickiness_cookie="AWSALB", stickiness_seconds=3600,
    )  # fmt: skip
    document = alb_bootstrap(spec)
    (listener,) = document["static_resources"]["listeners"]
    (cluster,) = document["static_resources"]["clusters"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]

    assert listener["address"]["socket_address"] == {"address": "127.0.0.3", "port_value": 18080}
    assert document["admin"]["address"]["socket_address"] == {"address": "127.0.0.3", "port_value": 19901}
    # One idle timeout, toward clients and toward targets: the keep-alive trap stays open.
    assert manager["common_http_protocol_options"]["idle_timeout"] == "42.000s"
    upstream = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert upstream["common_http_protocol_options"]["idle_timeout"] == "42.000s"
    assert manager["stream_idle_timeout"] == "42.000s"
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert route["route"] == {"cluster": "targets", "timeout": "0s"}
    # No retries anywhere; the ALB is the edge (x-forwarded-for gets the client's address).
    assert not {"retry_policy", "retry_on", "num_retries", "retry_priority"} & set(_keys(document))
    assert manager["use_remote_address"] is True
    # Health checks from the spec, also while no traffic flows; no panic routing.
    (check,) = cluster["health_checks"]
    assert check == {
        "timeout": "3.000s",
        "interval": "7.000s",
        "no_traffic_interval": "7.000s",
        "unhealthy_threshold": 3,
        "healthy_threshold": 4,
        "http_health_check": {"path": "/health/ready"},
    }
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}}
    ports = [
        e["endpoint"]["address"]["socket_address"]
        for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert ports == [
        {"address": "127.0.0.1", "port_value": 8001},
        {"address": "127.0.0.1", "port_value": 8002},
    ]
    # lb_cookie stickiness, and a dropped target connection answered 502.
    sticky = manager["http_filters"][0]["typed_config"]["session_state"]["typed_config"]["cookie"]
    assert sticky == {"name": "AWSALB", "path": "/", "ttl": "3600s"}
    assert manager["local_reply_config"]["mappers"] == [
        {"filter": {"response_flag_filter": {"flags": ["UC", "UR", "UF"]}}, "status_code": 502}
    ]
    assert manager["access_log"][0]["typed_config"]["path"] == str(tmp_path / "alb-green-access.log")


@pytest.mark.parametrize("address", ["10.0.0.1", "0.0.0.0", "::1", "localhost", "128.0.0.1"])
def test_an_address_outside_loopback_is_refused(tmp_path: Path, address: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8|not an IP address"):
        AlbSpec("blue", address, 18080, 19901, (8001,), tmp_path)


@pytest.mark.parametrize(
    "overrides",
    [{"idle_timeout_seconds": 0.5}, {"idle_timeout_seconds": 4001}, {"stickiness_seconds": 0},
     {"stickiness_seconds": 7 * 86400 + 1}, {"health_timeout_seconds": 0}],
)  # fmt: skip
def test_settings_outside_the_albs_ranges_are_refused(tmp_path: Path, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AlbSpec("blue", ADDRESS, 18080, 19901, (8001,), tmp_path, **overrides)


# -- a real Envoy ------------------------------------------------------------------------


def test_a_cookie_keeps_a_client_on_one_target_until_it_is_unhealthy(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    with ledger_color(postgres, tmp_path, instances=2) as deployer:
        ports = tuple(deployer.ports["blue"])
        with running(spec_for(tmp_path, ports)) as alb, httpx.Client(base_url=alb.url, timeout=5) as client:
            alb.wait_healthy(ports)
            first = client.get("/health/live")
            assert first.status_code == 200
            assert "AWSALB" in first.cookies
            served = {first.headers["x-served-by"]} | {
                client.get("/health/live").headers["x-served-by"] for _ in range(19)
            }
            assert len(served) == 1, served
            (instance,) = served
            index = int(instance.rsplit("-", 1)[1])

            # Its target drains (SIGTERM: /health/ready answers 503) and then exits.
            pid = deployer.instance_pid("blue", index)
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: alb.target_health().get(ports[index]) is False, 20, "the ALB marks it unhealthy")
            after = [client.get("/health/live") for _ in range(20)]
            assert [r.status_code for r in after] == [200] * 20
            moved = {r.headers["x-served-by"] for r in after}
            assert moved == {f"blue/blue-{1 - index}"}, moved
            assert deployer.wait_exit(pid, 20)
            assert [client.get("/health/live").status_code for _ in range(5)] == [200] * 5


class DroppingTarget:
    """A target that passes its health check and drops every other request: it reads the
    request and closes the connection without answering. Counts the requests it dropped."""

    def __init__(self, health_path: str = "/health/ready") -> None:
        self.health_path = health_path
        self.port = free_port()
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        path = head.split(b" ", 2)[1].decode()
        if path == self.health_path:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        else:
            self.dropped += 1
        writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._started.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def __enter__(self) -> DroppingTarget:
        self._thread.start()
        assert self._started.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def test_a_target_that_drops_the_connection_is_answered_502_and_not_retried(tmp_path: Path) -> None:
    with DroppingTarget() as target, running(spec_for(tmp_path, (target.port,))) as alb:
        alb.wait_healthy([target.port])
        # A client asking for retries gets none: the ALB sends a request to a target once.
        answer = httpx.get(
            f"{alb.url}/transfers",
            headers={
                "x-envoy-retry-on": "reset,connect-failure,5xx",
                "x-envoy-max-retries": "3",
                "x-forwarded-for": "10.0.0.1",  # claims to come from inside
            },
            timeout=5,
        )
        assert answer.status_code == 502, answer.text
        assert target.dropped == 1


def test_request_count_and_last_request_time_follow_the_traffic(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    with ledger_color(postgres, tmp_path, instances=1) as deployer:
        ports = tuple(deployer.ports["blue"])
        with running(spec_for(tmp_path, ports)) as alb:
            alb.wait_healthy(ports)
            assert alb.request_count() == 0
            assert alb.last_request_at() is None  # health checks are not client requests

            before = time.time()
            with httpx.Client(base_url=alb.url, timeout=5) as client:
                assert [client.get("/health/live").status_code for _ in range(3)] == [200] * 3
            wait_for(lambda: alb.request_count() == 3, 5, "3 requests counted")
            wait_for(lambda: alb.last_request_at() is not None, 5, "the access log has the requests")
            first = alb.last_request_at()
            assert first is not None and before - 0.001 <= first <= time.time()

            with httpx.Client(base_url=alb.url, timeout=5) as client:
                assert client.get("/nowhere").status_code == 404
            wait_for(lambda: alb.request_count() == 4, 5, "a 4th request counted")
            wait_for(lambda: (alb.last_request_at() or 0) > first, 5, "the newest request is later")
