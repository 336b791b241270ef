"""Deployer on this machine: a color is N `ledger serve` processes on fixed loopback ports.

The processes outlive the `cutover` command that started them (their own session), so
their pids and image are kept in `<state_dir>/<color>.json`; stopping a color is SIGTERM
to each pid and a wait for the graceful drain to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cutover.model import Color


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class LocalDeployer:
    def __init__(
        self,
        state_dir: Path,
        ports: Mapping[Color, list[int]],
        base_env: Mapping[str, str],
        *,
        image_env: Callable[[str], Mapping[str, str]] | None = None,
        stop_timeout: float = 60.0,
        start_timeout: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.ports = ports
        self.base_env = dict(base_env)
        self.image_env = image_env or (lambda _image: {})
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout

    # -- state ---------------------------------------------------------------

    def _state_file(self, color: Color) -> Path:
        return self.state_dir / f"{color}.json"

    def state(self, color: Color) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_file(color).read_text()))
        except FileNotFoundError:
            return {"image": None, "pids": []}

    def _save(self, color: Color, image: str | None, pids: list[int]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file(color).with_suffix(".tmp")
        tmp.write_text(json.dumps({"image": image, "pids": pids, "ports": self.ports[color]}))
        tmp.replace(self._state_file(color))

    def pids(self, color: Color) -> list[int]:
        return [pid for pid in self.state(color)["pids"] if pid and pid_alive(pid)]

    def current_image(self, color: Color) -> str | None:
        state = self.state(color)
        return state["image"] if self.pids(color) else None

    # -- actions -------------------------------------------------------------

    def deploy(self, color: Color, image: str, progress: Callable[[str], None]) -> None:
        """Replace the color's processes with ones running `image` (old ones drain first)."""
        if self.pids(color):
            progress(f"stopping {color} (graceful drain)")
            self.stop(color)
        ports = self.ports[color]
        self._save(color, image, [0] * len(ports))
        pids = [self.start_instance(color, index) for index in range(len(ports))]
        progress(f"started {color} {image}: pids {pids} on ports {ports}")
        self._wait_live(color, ports)

    def start_instance(self, color: Color, index: int) -> int:
        """(Re)start one instance of the color with the color's current image."""
        state = self.state(color)
        image = state["image"]
        ports = self.ports[color]
        peers = ",".join(f"127.0.0.1:{port}" for port in ports)
        env = {
            **os.environ,
            **self.base_env,
            "HOST": "127.0.0.1",
            "PORT": str(ports[index]),
            "COLOR": color,
            "APP_VERSION": image,
            "INSTANCE_ID": f"{color}-{index}",
            "CLUSTER_DISCOVERY": f"static:{peers}",
            **self.image_env(image),
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / f"{color}-{index}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ledger", "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command, and is not hit by its Ctrl-C
            )
        pids = list(state["pids"]) or [0] * len(ports)
        pids[index] = proc.pid
        self._save(color, image, pids)
        return proc.pid

    def instance_pid(self, color: Color, index: int) -> int:
        return int(self.state(color)["pids"][index])

    def wait_exit(self, pid: int, timeout: float) -> bool:
        """Wait for one process to exit; True if it did."""
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            _reap([pid])
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        _reap([pid])
        return True

    def _wait_live(self, color: Color, ports: list[int]) -> None:
        import httpx  # here, not at the top: `cutover status` imports this module too

        deadline = time.monotonic() + self.start_timeout
        for port in ports:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{color} on port {port} did not start within {self.start_timeout:g}s")
                time.sleep(0.05)

    def stop(self, color: Color, sig: int = signal.SIGTERM) -> None:
        """Signal every process of the color and wait until all have exited."""
        pids = self.pids(color)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + self.stop_timeout
        while any(pid_alive(pid) for pid in pids):
            _reap(pids)
            if time.monotonic() > deadline:
                for pid in pids:
                    if pid_alive(pid):
                        os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        _reap(pids)
        state = self.state(color)
        self._save(color, state["image"], [])

    def retire(self, color: Color, progress: Callable[[str], None]) -> None:
        """`cutover retire`: stop the color's processes (each drains) and keep them stopped."""
        progress(f"stopping {color}: pids {self.pids(color)} (graceful drain)")
        self.stop(color)
        progress(f"{color} stopped")

    def is_retired(self, color: Color) -> bool:
        return not self.pids(color)


def _reap(pids: list[int]) -> None:
    """Collect the exit status of those of `pids` that are our children, so no zombie stays."""
    for pid in pids:
        # Not our child (started by another cutover command): its own parent reaps it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
