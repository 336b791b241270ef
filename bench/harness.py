"""What the benchmarks share: wrk runs, server processes and a results table."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

from moto.server import ThreadedMotoServer

from cutover.local.ports import free_port
from cutover.local.process import HttpProbe, LocalProcess, NotReady

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class BenchError(RuntimeError):
    pass


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    return path


def wrk(url: str, *, seconds: float, connections: int, threads: int = 1, script: Path | None = None) -> float:
    """Requests per second that wrk measured; raises if any request failed."""
    command = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    match = _RPS.search(output)
    if match is None:
        raise BenchError(f"wrk printed no rate:\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = _ERRORS.search(output)
    if non_2xx or (errors and any(int(n) for n in errors.groups())):
        raise BenchError(f"requests failed during the run:\n{output}")
    return float(match[1])


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """A moto server on a free loopback port, and its endpoint. Its access log (werkzeug's
    INFO lines) is silenced: a benchmark prints its results; werkzeug's errors still show."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


class Server:
    """A server process on a free loopback port, stopped with SIGTERM by its pid. Its output
    goes to a log file, shown only when it fails to start."""

    def __init__(
        self, command: list[str], env: dict[str, str], cwd: Path | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = LocalProcess.start(  # output to an anonymous file, closed in stop()
            [part.replace("{port}", str(self.port)) for part in command],
            env={**env, "PORT": str(self.port)},
            cwd=cwd,
        )

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines)

    def wait_ready(self, path: str, timeout: float = 30) -> Server:
        """Until `path` answers 200; BenchError with its output (and the server stopped) if not."""
        try:
            self.process.wait_ready(HttpProbe(self.url + path), timeout)
        except NotReady as failed:
            self.stop()
            raise BenchError(str(failed)) from None
        return self

    def stop(self) -> None:
        self.process.stop(grace=30)


def uvicorn_command(app: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
