"""Everything a rehearsal runs on this machine, started and stopped by pid:
an embedded Postgres, the colors (local deployer), and Envoy (the traffic router)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cutover import envfile
from cutover.adapters.envoy_router import EnvoyRouter
from cutover.adapters.history import FileHistory
from cutover.adapters.http_health import HttpHealth
from cutover.adapters.local_deployer import LocalDeployer, pid_alive
from cutover.adapters.locks import FileLock
from cutover.adapters.state_store import FileStateStore
from cutover.envoy.process import EnvoyProcess
from cutover.envoy.weights import EnvoyLayout
from cutover.local.database import migrate_database
from cutover.local.ports import free_port
from cutover.local.postgres import EmbeddedPostgres
from cutover.machine import Gates, ReleaseMachine, Reporter
from cutover.model import COLORS, Color, Traffic

BROKEN_TAG_SUFFIX = "-broken"


@dataclass
class RecordingRouter:
    """The Envoy router, plus a log of every change (for traffic-follow times and the
    weight-zero windows of the sticky-session accounting)."""

    inner: EnvoyRouter
    clock: Callable[[], float]
    changes: list[tuple[float, Traffic]] = field(default_factory=list)

    def read(self) -> Traffic:
        return self.inner.read()

    def set(self, target: Traffic, expected: Traffic) -> Traffic:
        applied = self.inner.set(target, expected)
        self.changes.append((self.clock(), applied))
        return applied

    def wait_in_sync(self, timeout: float) -> float:
        return self.inner.wait_in_sync(timeout)


class LocalStack:
    def __init__(self, workdir: Path, pods: int, app_env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.pods = pods
        self.postgres = EmbeddedPostgres(workdir / "postgres" / "data")
        self.ports: dict[Color, list[int]] = {c: [free_port() for _ in range(pods)] for c in COLORS}
        self.layout = EnvoyLayout(
            workdir / "envoy",
            free_port(),
            free_port(),
            {c: free_port() for c in COLORS},
            self.ports,
        )
        self.app_env = dict(app_env)
        self.deployer: LocalDeployer | None = None
        self.envoy = EnvoyProcess(self.layout)
        self.router: RecordingRouter | None = None
        self.pids_seen: set[int] = set()

    @property
    def database_url(self) -> str:
        return self.postgres.url("ledger")

    def instance_by_port(self) -> dict[int, str]:
        return {port: f"{c}/{c}-{i}" for c in COLORS for i, port in enumerate(self.ports[c])}

    def start_database(self) -> None:
        self.postgres.start()
        self.postgres.create_database("ledger")
        migrate_database(self.database_url)

    def start_colors_and_proxy(self, image: str, clock: Callable[[], float]) -> None:
        self.deployer = LocalDeployer(
            self.workdir / "colors",
            self.ports,
            {**self.app_env, "DATABASE_URL": self.database_url},
            image_env=self._image_env,
        )
        self.deployer.deploy("blue", image, lambda _line: None)
        self.pids_seen.update(self.deployer.pids("blue"))
        envoy_router = EnvoyRouter(self.layout)
        envoy_router.initialize(Traffic.all_on("blue"))
        self.envoy.start(Traffic.all_on("blue"))
        if self.envoy.pid:
            self.pids_seen.add(self.envoy.pid)
        self.router = RecordingRouter(envoy_router, clock)

    def _image_env(self, image: str) -> dict[str, str]:
        """A tag ending in -broken is a build that cannot reach its database: it starts and
        answers liveness, but never becomes ready (the broken-release fault)."""
        if image.endswith(BROKEN_TAG_SUFFIX):
            return {
                "DATABASE_URL": f"postgresql://ledger@127.0.0.1:{free_port()}/ledger",
                "DB_PING_TIMEOUT_SECONDS": "0.2",
            }
        return {}

    def machine(self, gates: Gates, reporter: Reporter) -> ReleaseMachine:
        assert self.deployer is not None and self.router is not None
        return ReleaseMachine(
            "rehearsal",
            self.router,
            _TrackingDeployer(self.deployer, self.pids_seen),
            FileLock(self.workdir / "lock.json", lease_seconds=30),
            FileHistory(self.workdir / "history.jsonl"),
            HttpHealth({c: self.layout.color_url(c) for c in COLORS}),
            gates,
            states=FileStateStore(self.workdir / "release-state.json"),
            reporter=reporter,
            actor="rehearsal",
        )

    def write_env_file(self) -> Path:
        """So that `cutover status --env <this file>` works while the rehearsal runs."""
        path = self.workdir / "rehearsal.json"
        spec = envfile.EnvFile(
            name="rehearsal",
            router=envfile.EnvoyRouter(layout=self.layout.as_dict()),
            deployer=envfile.LocalDeployer(state_dir=str(self.workdir / "colors"), ports=self.ports),
            lock=envfile.FileLock(path=str(self.workdir / "lock.json")),
            history=envfile.JsonFile(path=str(self.workdir / "history.jsonl")),
            colors={c: envfile.ColorEntry(endpoint=self.layout.color_url(c)) for c in COLORS},
        )
        path.write_text(json.dumps(spec.to_dict(), indent=2))
        return path

    def stop_all(self) -> list[int]:
        """Stop colors (graceful), Envoy and Postgres; return pids still alive (should be none)."""
        if self.deployer is not None:
            for color in COLORS:
                self.pids_seen.update(self.deployer.pids(color))
                self.deployer.stop(color)
        self.envoy.stop()
        self.postgres.stop()
        return sorted(pid for pid in self.pids_seen if pid_alive(pid))


class _TrackingDeployer:
    """Remembers every pid the release starts, so teardown can prove none is left."""

    def __init__(self, inner: LocalDeployer, seen: set[int]) -> None:
        self.inner, self.seen = inner, seen

    def deploy(self, color: Color, image: str, progress: Callable[[str], None]) -> None:
        try:
            self.inner.deploy(color, image, progress)
        finally:
            self.seen.update(self.inner.pids(color))

    def current_image(self, color: Color) -> str | None:
        return self.inner.current_image(color)
