"""Start, probe, signal and stop real `ledger serve` processes on this machine."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cutover.local.ports import free_port
from cutover.local.process import HttpProbe, LocalProcess, NotReady

LedgerStartError = NotReady  # the process exited or never became ready; the message has its log tail


class LedgerProcess:
    """One `ledger serve` process on a loopback address (127.0.0.1 unless told otherwise)."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.env = {**os.environ, **env, "HOST": host, "PORT": str(self.port)}
        self.log_path = log_path
        self.process: LocalProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self._started().pid

    def _started(self) -> LocalProcess:
        assert self.process is not None, "not started"
        return self.process

    def start(self, *, wait_for: str | None = "/health/ready", timeout: float = 30.0) -> LedgerProcess:
        self.process = LocalProcess.start(
            [sys.executable, "-m", "ledger", "serve"], env=self.env, log_path=self.log_path
        )
        if wait_for is not None:
            self.wait_for_status(wait_for, 200, timeout)
        return self

    def wait_for_status(self, path: str, status: int, timeout: float) -> None:
        """Until `path` answers `status`; LedgerStartError if the process exits first or time runs out."""
        self._started().wait_ready(HttpProbe(self.url + path, status=status), timeout)

    def send_signal(self, sig: int) -> None:
        self._started().send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self._started().wait(timeout)

    def running(self) -> bool:
        return self.process is not None and self.process.alive

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for the drain; SIGKILL if it overruns `timeout`."""
        return self.process.stop(grace=timeout) if self.process is not None else None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines) if self.process is not None else "(no log)"
