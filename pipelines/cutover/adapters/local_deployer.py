"""Deployer on this machine: a color is N processes of a service on fixed loopback ports.

Each runs `command` (default: `ledger serve` with this Python) with the platform's
environment: HOST, PORT, COLOR, APP_VERSION, INSTANCE_ID, CLUSTER_DISCOVERY, plus `base_env`
and the image's own variables; a deploy waits until every instance answers `live_path`
(default ledger's /health/live), and fails at once, with the last lines of its log, when
one exits first (a bad setting: the service refused to start).

The processes outlive the `cutover` command that started them (their own session), so
their pids and image are kept in `<state_dir>/<color>.json`; stopping a color is SIGTERM
to each pid and a wait for the graceful drain to end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cutover.local.process import (
    HttpProbe,
    LocalProcess,
    NotReady,
    reap,
    stop_pids,
    wait_pids_exit,
    wait_until,
)
from cutover.local.process import pid_alive as pid_alive  # where callers have always imported it from
from cutover.model import Color

DEFAULT_LIVE_PATH = "/health/live"  # ledger's liveness probe


def default_command() -> list[str]:
    """ledger, with the Python running cutover."""
    return [sys.executable, "-m", "ledger", "serve"]


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
        command: Sequence[str] | None = None,
        live_path: str = DEFAULT_LIVE_PATH,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.ports = ports
        self.base_env = dict(base_env)
        self.image_env = image_env or (lambda _image: {})
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.command = list(command) if command else default_command()
        self.live_path = live_path

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
        process = LocalProcess.start(
            self.command,
            env=env,
            log_path=self.state_dir / f"{color}-{index}.log",
            new_session=True,  # outlives this command, and is not hit by its Ctrl-C
        )
        pids = list(state["pids"]) or [0] * len(ports)
        pids[index] = process.pid
        self._save(color, image, pids)
        return process.pid

    def instance_pid(self, color: Color, index: int) -> int:
        return int(self.state(color)["pids"][index])

    def wait_exit(self, pid: int, timeout: float) -> bool:
        """Wait for one process to exit; True if it did."""
        return wait_pids_exit([pid], timeout, interval=0.02)

    def _wait_live(self, color: Color, ports: list[int]) -> None:
        """Until each port in turn answers `live_path`, all within `start_timeout`; NotReady
        at once, with its log's last lines, when an instance exits first."""
        waiting = list(range(len(ports)))
        pids = list(self.state(color)["pids"])

        def all_live() -> bool:
            while waiting and HttpProbe(f"http://127.0.0.1:{ports[waiting[0]]}{self.live_path}")():
                waiting.pop(0)
            for index in waiting:
                reap(pids[index])  # our child: collect it, so an exited one does not look alive
                if not pid_alive(pids[index]):
                    raise NotReady(self._exited(color, index))
            return not waiting

        wait_until(all_live, self.start_timeout, what=f"{color} on ports {ports} answering {self.live_path}")

    def _exited(self, color: Color, index: int) -> str:
        log = self.state_dir / f"{color}-{index}.log"
        try:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        said = " | ".join(line.strip() for line in tail) or "(nothing)"
        return f"{color}-{index} ({' '.join(self.command)}) exited before answering {self.live_path}; its log {log} ends: {said}"

    def stop(self, color: Color, sig: int = signal.SIGTERM) -> None:
        """Signal every process of the color and wait until all have exited (SIGKILL after
        `stop_timeout`). That includes a process started but not yet recorded (a signal
        between its start and the state file): it writes to the color's log."""
        pids = {pid for pid in self.pids(color) if pid > 0} | set(self._unrecorded(color))
        stop_pids(sorted(pids), grace=self.stop_timeout, sig=sig)
        state = self.state(color)
        self._save(color, state["image"], [])

    def _unrecorded(self, color: Color) -> list[int]:
        """Live processes whose stdout is one of the color's logs (Linux: /proc)."""
        logs = {
            str((self.state_dir / f"{color}-{index}.log").resolve())
            for index in range(len(self.ports[color]))
        }
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if os.readlink(entry / "fd" / "1") in logs:
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
        return [pid for pid in found if pid_alive(pid)]

    def retire(self, color: Color, progress: Callable[[str], None]) -> None:
        """`cutover retire`: stop the color's processes (each drains) and keep them stopped."""
        progress(f"stopping {color}: pids {self.pids(color)} (graceful drain)")
        self.stop(color)
        progress(f"{color} stopped")

    def is_retired(self, color: Color) -> bool:
        return not self.pids(color)
