"""Everything the AWS-path rehearsal runs on this machine, started and stopped by pid:

- Postgres (pgserver) and the colors (the local deployer's ledger processes), and the
  second service's colors (greeter, `cutover.rehearsal.greeter`) when examples/ is here;
- AWS (a moto server with Route53 strict about DELETEs, DynamoDB for the lock, history and
  release state), holding what the Pulumi program creates: per service the weighted alias
  records of its name and its generation record, and the tables;
- one ALB-shaped Envoy per color, each on a loopback address of its own (an ALB has its
  own addresses), shared by the services: a host rule and a target group per service;
- an authoritative DNS server that answers the services' names from the zone's live
  weighted records, with the alias target's TTL, as Route53 does.

cutover runs against it exactly as in AWS: its `route53` router, `dynamodb` lock, history
and state, read from an environment file per service this stack writes (the services share
the zone and the tables; each has its own records, lock and state keys).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover import envconfig, envfile
from cutover.adapters.http_health import SmokeCheck
from cutover.adapters.local_deployer import LocalDeployer, pid_alive
from cutover.build import build_machine
from cutover.envoy.alb import AlbBalancer, AlbService, AlbSpec
from cutover.local.aws import (
    CREDENTIALS_ENV,
    REGION,
    LocalAws,
    ZoneLayout,
    create_records,
    create_release_tables,
    create_zone,
)
from cutover.local.database import migrate_database
from cutover.local.dns import WeightedDnsServer
from cutover.local.ports import free_port
from cutover.local.postgres import EmbeddedPostgres
from cutover.machine import Gates, ReleaseMachine, Reporter
from cutover.model import COLORS, Color
from cutover.rehearsal import greeter
from cutover.rehearsal.load import DnsTarget
from cutover.rehearsal.stack import RecordingRouter

BROKEN_IMAGE = "v3-broken"
ADDRESSES: dict[Color, str] = {"blue": "127.0.0.2", "green": "127.0.0.3"}  # loopback: never leaves the host
ENV_NAME = "rehearsal"
LEDGER = "ledger"
GREETER_ENV_NAME = "rehearsal-greeter"


@dataclass(frozen=True)
class AwsShape:
    """The parts of AWS the rehearsal models, with their timings."""

    dns_ttl_seconds: int = 60  # the alias target's TTL (an ALB's is 60 s)
    idle_timeout_seconds: float = 60.0  # the ALB's, toward clients and targets
    health_interval_seconds: float = 0.5  # the target group's health check
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2


class AwsStack:
    def __init__(
        self,
        workdir: Path,
        pods: int,
        app_env: Mapping[str, str],
        shape: AwsShape,
        *,
        image_env: Mapping[str, Mapping[str, str]] | None = None,
        settle_seconds: float = 30.0,
        greeter_pods: int = 2,
    ) -> None:
        self.workdir = workdir
        self.settle_seconds = settle_seconds
        self.pods = pods
        self._ports_taken: set[int] = set()
        self.shape = shape
        self.postgres = EmbeddedPostgres(workdir / "postgres" / "data")
        self.ports: dict[Color, list[int]] = {c: [self._port() for _ in range(pods)] for c in COLORS}
        self.aws = LocalAws()
        # One ALB per color for every service: each service's records alias the same ALBs.
        albs = {c: f"cutover-{c}-{i}.{REGION}.elb.amazonaws.com." for i, c in enumerate(COLORS)}
        self.zone = ZoneLayout(zone_name="example.com", record_name="ledger.example.com.", alias_targets=albs)
        # The second service, when examples/greeter is beside the package (a clone).
        self.greeter_source = greeter.source_dir() if greeter_pods else None
        self.greeter_ports: dict[Color, list[int]] = (
            {c: [self._port() for _ in range(greeter_pods)] for c in COLORS} if self.greeter_source else {}
        )
        self.greeter_zone = ZoneLayout(
            zone_name="example.com", record_name=f"{greeter.NAME}.example.com.", alias_targets=albs
        )
        self.zone_id = ""
        self.balancer_port = self._port()
        self.endpoint_ports = {LEDGER: self._port(), greeter.NAME: self._port()}
        self.balancers: dict[Color, AlbBalancer] = {
            c: AlbBalancer(
                AlbSpec(
                    color=c,
                    address=ADDRESSES[c],
                    port=self.balancer_port,
                    admin_port=self._port(),
                    targets=(),
                    services=self._services(c),
                    directory=workdir / f"alb-{c}",
                    idle_timeout_seconds=shape.idle_timeout_seconds,
                    health_interval_seconds=shape.health_interval_seconds,
                    health_timeout_seconds=min(1.0, shape.health_interval_seconds),
                    healthy_threshold=shape.healthy_threshold,
                    unhealthy_threshold=shape.unhealthy_threshold,
                )
            )
            for c in COLORS
        }
        self.dns: WeightedDnsServer | None = None
        self.app_env = dict(app_env)  # may name its own DATABASE_URL (e.g. a least-privilege role)
        # Per image tag, as the environment file's deployer has it: a tag ending in -broken
        # cannot reach its database (live, never ready: the broken-build fault).
        self.image_env = {tag: dict(env) for tag, env in (image_env or {}).items()}
        self.deployer: LocalDeployer | None = None
        self.router: RecordingRouter | None = None
        self.env_file = workdir / f"{ENV_NAME}.json"
        self.greeter_deployer: LocalDeployer | None = None
        self.greeter_router: RecordingRouter | None = None
        self.greeter_env_file = workdir / f"{GREETER_ENV_NAME}.json"
        self.pids_seen: set[int] = set()

    def _port(self) -> int:
        """A free port no other part of this stack was given (the OS may hand one out twice)."""
        while (port := free_port()) in self._ports_taken:
            pass
        self._ports_taken.add(port)
        return port

    def _services(self, color: Color) -> tuple[AlbService, ...]:
        """The services of `color`'s ALB: a host rule and a target group each."""
        ledger = AlbService(
            LEDGER,
            self.zone.record_name.rstrip("."),
            tuple(self.ports[color]),
            endpoint_port=self.endpoint_ports[LEDGER],
        )
        if not self.greeter_source:
            return (ledger,)
        second = AlbService(
            greeter.NAME,
            self.greeter_zone.record_name.rstrip("."),
            tuple(self.greeter_ports[color]),
            health_path=greeter.READY_PATH,
            endpoint_port=self.endpoint_ports[greeter.NAME],
        )
        return (ledger, second)

    @property
    def has_greeter(self) -> bool:
        return self.greeter_source is not None

    # -------------------------------------------------------------- where things are

    @property
    def database_url(self) -> str:
        return self.postgres.url("ledger")

    def dns_target(self, hold_share: float, hold_factor: float) -> DnsTarget:
        assert self.dns is not None
        return DnsTarget(
            ("127.0.0.1", self.dns.port), self.zone.record_name, self.balancer_port, hold_share, hold_factor
        )

    def greeter_target(self, hold_factor: float) -> DnsTarget:
        """Where greeter's clients go: its name through the same DNS server, the same ALBs."""
        assert self.dns is not None
        return DnsTarget(
            ("127.0.0.1", self.dns.port), self.greeter_zone.record_name, self.balancer_port, 0.0, hold_factor
        )

    def access_log(self, color: Color, service: str = LEDGER) -> Path:
        """`service`'s access log on `color`'s ALB (its target group's traffic)."""
        return self.balancers[color].spec.service_access_log_path(service)

    def address_color(self, address: str) -> Color | None:
        return next((c for c, a in ADDRESSES.items() if a == address), None)

    def instance_by_port(self, color: Color) -> dict[int, str]:
        return {port: f"{color}/{color}-{i}" for i, port in enumerate(self.ports[color])}

    # -------------------------------------------------------------- start

    def start_database(self) -> None:
        self.image_env[BROKEN_IMAGE] = {
            "DATABASE_URL": f"postgresql://ledger@127.0.0.1:{free_port()}/ledger",
            "DB_PING_TIMEOUT_SECONDS": "0.2",
        }
        self.postgres.start()
        self.postgres.create_database("ledger")
        migrate_database(self.database_url)

    def start_aws(self) -> None:
        """moto with the zone, the records (blue 100, green 0) and the tables; the DNS server."""
        self.aws.start()
        self.zone_id = create_zone(self.aws.client("route53"), self.zone, blue=100, green=0)
        if self.has_greeter:
            create_records(self.aws.client("route53"), self.zone_id, self.greeter_zone, blue=100, green=0)
        create_release_tables(self.aws.client("dynamodb"))
        route53 = self.aws.client("route53")

        def live_records() -> list[dict[str, Any]]:
            return list(route53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"])

        self.dns = WeightedDnsServer(
            self.zone.record_name,
            live_records,
            {self.zone.alias_targets[c]: ADDRESSES[c] for c in COLORS},
            self.shape.dns_ttl_seconds,
            more_names=[self.greeter_zone.record_name] if self.has_greeter else [],
        )
        self.dns.start()

    def start_colors_and_balancers(self, image: str) -> None:
        self.write_env_file()
        self.deployer = LocalDeployer(
            self.workdir / "colors",
            self.ports,
            {"DATABASE_URL": self.database_url, **self.app_env},
            image_env=self._image_env,
        )
        self.deployer.deploy("blue", image, lambda _line: None)
        self.pids_seen.update(self.deployer.pids("blue"))
        if self.greeter_source is not None:
            self.write_greeter_env_file()
            self.greeter_deployer = self._greeter_deployer(self.greeter_source)
            try:
                self.greeter_deployer.deploy("blue", greeter.BLUE_IMAGE, lambda _line: None)
            finally:
                self.pids_seen.update(self.greeter_deployer.pids("blue"))
        for balancer in self.balancers.values():
            balancer.start()
            if balancer.pid:
                self.pids_seen.add(balancer.pid)
        self.balancers["blue"].wait_healthy([*self.ports["blue"], *self.greeter_ports.get("blue", [])])

    def _greeter_deployer(self, source: Path) -> LocalDeployer:
        return LocalDeployer(
            self.workdir / "greeter-colors",
            self.greeter_ports,
            greeter.app_env(source, self.app_env.get("DRAIN_SECONDS", "3")),
            image_env=lambda image: dict(greeter.BAD_IMAGE_ENV) if image == greeter.BAD_IMAGE else {},
            command=greeter.command(),
            live_path=greeter.LIVE_PATH,
        )

    def _image_env(self, image: str) -> dict[str, str]:
        return dict(self.image_env.get(image, {}))

    def write_env_file(self, gates: Mapping[str, float] | None = None) -> Path:
        """The environment file cutover reads, as for a real AWS account (plus the endpoint)."""
        image_env = {**self.image_env}
        spec = self._env_file(
            name=ENV_NAME,
            service=LEDGER,
            record_name=self.zone.record_name,
            deployer=envfile.LocalDeployer(
                state_dir=str(self.workdir / "colors"),
                ports=self.ports,
                env={"DATABASE_URL": self.database_url, **self.app_env},
                image_env=image_env or None,
            ),
            gates=dict(gates) if gates else None,
        )
        self.env_file.write_text(json.dumps(spec.to_dict(), indent=2))
        return self.env_file

    def write_greeter_env_file(self) -> Path:
        """greeter's environment file: its own record, deployer, lock and state keys (its
        name), in the same zone and tables as ledger's; its gates on its own paths."""
        assert self.greeter_source is not None
        source = self.greeter_source
        spec = self._env_file(
            name=GREETER_ENV_NAME,
            service=greeter.NAME,
            record_name=self.greeter_zone.record_name,
            deployer=envfile.LocalDeployer(
                state_dir=str(self.workdir / "greeter-colors"),
                ports=self.greeter_ports,
                env=greeter.app_env(source, self.app_env.get("DRAIN_SECONDS", "3")),
                image_env={greeter.BAD_IMAGE: dict(greeter.BAD_IMAGE_ENV)},
                command=greeter.command(),
                live_path=greeter.LIVE_PATH,
            ),
            smoke_checks=(SmokeCheck(name="liveness", path=greeter.LIVE_PATH),),
            ready_path=greeter.READY_PATH,
        )
        self.greeter_env_file.write_text(json.dumps(spec.to_dict(), indent=2))
        return self.greeter_env_file

    def _env_file(
        self, *, name: str, service: str, record_name: str, deployer: envfile.LocalDeployer, **extra: Any
    ) -> envfile.EnvFile:
        """One service's environment file: its route53 record, the shared lock, history and
        AWS endpoint, each color through that color's ALB (`https://<color>.<domain>`, on the
        service's endpoint listener), and the service's own access logs on the ALBs, flushed
        every 0.1 s (`cutover retire` reads them)."""
        return envfile.EnvFile(
            name=name,
            router=envfile.Route53Router(
                hosted_zone_id=self.zone_id,
                record_name=record_name,
                answer_ttl_seconds=self.shape.dns_ttl_seconds,
            ),
            deployer=deployer,
            lock=envfile.DynamoDBLock(table="locks", lease_seconds=30),
            history=envfile.DynamoDBTable(table="history"),
            aws=envfile.Aws(region=REGION, endpoint_url=self.aws.endpoint, call_budget_seconds=20),
            colors={c: envfile.ColorEntry(endpoint=self.balancers[c].service_url(service)) for c in COLORS},
            traffic_meter=envfile.AccessLogMeter(
                paths={c: str(self.access_log(c, service)) for c in COLORS},
                lag_seconds=0.5,
                settle_seconds=self.settle_seconds,
            ),
            **extra,
        )

    # -------------------------------------------------------------- operate

    def machine(self, gates: Gates, reporter: Reporter, clock: Callable[[], float]) -> ReleaseMachine:
        """cutover's release machine, built from the environment file as the CLI builds it;
        its router records every change (for the report)."""
        from cutover.build import build_router

        config = envconfig.load(str(self.env_file))
        if self.router is None:
            self.router = RecordingRouter(build_router(config, reporter.note), clock)  # type: ignore[arg-type]
        machine = build_machine(
            config, reporter, router=self.router, with_analysis=config.analysis is not None
        )
        machine.gates = gates
        return machine

    def greeter_machine(self, gates: Gates, reporter: Reporter, clock: Callable[[], float]) -> ReleaseMachine:
        """The release machine of greeter's environment file, as the CLI builds it."""
        from cutover.build import build_router

        config = envconfig.load(str(self.greeter_env_file))
        if self.greeter_router is None:
            self.greeter_router = RecordingRouter(build_router(config, reporter.note), clock)  # type: ignore[arg-type]
        machine = build_machine(config, reporter, router=self.greeter_router, with_analysis=False)
        machine.gates = gates
        return machine

    def subprocess_env(self) -> dict[str, str]:
        """The environment a `cutover` subprocess needs to reach this stack's AWS."""
        return {**os.environ, **CREDENTIALS_ENV}

    @contextmanager
    def credentials(self) -> Iterator[None]:
        """botocore's default chain finds moto's test credentials in this process."""
        saved = {key: os.environ.get(key) for key in CREDENTIALS_ENV}
        os.environ.update(CREDENTIALS_ENV)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    # -------------------------------------------------------------- stop

    def stop_all(self) -> list[int]:
        """Colors (graceful, every service's at once), balancers, DNS, AWS, Postgres; the pids
        still alive (none)."""
        deployers = [d for d in (self.deployer, self.greeter_deployer) if d is not None]
        for deployer in deployers:
            for color in COLORS:
                self.pids_seen.update(deployer.pids(color))
        stopping = [
            threading.Thread(target=deployer.stop, args=(color,), name=f"stop-{color}", daemon=True)
            for deployer in deployers
            for color in COLORS
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        for balancer in self.balancers.values():
            balancer.stop()
        if self.dns is not None:
            self.dns.stop()
        self.aws.close()
        self.postgres.stop()
        return sorted(pid for pid in self.pids_seen if pid_alive(pid))
