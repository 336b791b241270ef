"""Fixtures for the greeter example: real `python -m greeter` processes on 127.0.0.1."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cutover.local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
GREETER_DIR = ROOT / "examples" / "greeter"
# The platform contract's variables: the test's own environment must not leak into greeter.
CONTRACT = (
    "HOST",
    "PORT",
    "COLOR",
    "APP_VERSION",
    "INSTANCE_ID",
    "DRAIN_SECONDS",
    "SHUTDOWN_TIMEOUT_SECONDS",
    "HTTP_KEEP_ALIVE_SECONDS",
)


def greeter_env(port: int, **env: str) -> dict[str, str]:
    """The environment `python -m greeter` runs with from the repo, without installing it."""
    base = {name: value for name, value in os.environ.items() if name not in CONTRACT}
    path = os.pathsep.join(filter(None, [str(GREETER_DIR), base.get("PYTHONPATH")]))
    return {**base, "PYTHONPATH": path, "HOST": "127.0.0.1", "PORT": str(port), **env}


@dataclass
class Greeter:
    """One running greeter process."""

    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_until_started(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.running(), f"greeter exited {self.process.returncode}: {self.stderr.read_text()}"
            try:
                if httpx.get(self.url + "/startupz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"greeter not started within {timeout} s")


StartGreeter = Callable[..., Greeter]


def _starter(directory: Path) -> Iterator[StartGreeter]:
    started: list[Greeter] = []

    def start(*, wait: bool = True, **env: str) -> Greeter:
        port = free_port()
        env.setdefault("INSTANCE_ID", f"test-{len(started)}")
        stdout, stderr = directory / f"greeter-{len(started)}.out", directory / f"greeter-{len(started)}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "greeter"], env=greeter_env(port, **env), stdout=out, stderr=err
            )
        greeter = Greeter(process, port, stdout, stderr)
        started.append(greeter)
        if wait:
            greeter.wait_until_started()
        return greeter

    yield start
    for greeter in started:
        if greeter.running():
            os.kill(greeter.pid, signal.SIGKILL)
        greeter.process.wait(10)


@pytest.fixture
def start_greeter(tmp_path: Path) -> Iterator[StartGreeter]:
    """Start greeters (`start(**env)`); any still running afterwards is killed by its pid."""
    yield from _starter(tmp_path)


@pytest.fixture(scope="module")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Greeter]:
    """One greeter shared by a module's tests that do not stop it (keep-alive 1 s)."""
    for start in _starter(tmp_path_factory.mktemp("greeter")):
        yield start(COLOR="green", APP_VERSION="v1.2.3", HTTP_KEEP_ALIVE_SECONDS="1", GREETER_UNKNOWN="x")


class RawConnection:
    """One HTTP/1.1 connection written by hand, to see exactly what the server does with it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        """Write raw bytes, read one response: status, headers (lower-case names), body."""
        self.sock.sendall(data)
        status = int(self.reader.readline().split()[1])
        headers: dict[str, str] = {}
        while (line := self.reader.readline().decode().rstrip("\r\n")) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, self.reader.read(int(headers.get("content-length", "0")))

    def get(self, target: str) -> tuple[int, dict[str, str], bytes]:
        return self.send(f"GET {target} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())

    def closed_by_server(self, within: float) -> bool:
        """True if the server closes the connection within `within` s (nothing more arrives)."""
        readable, _, _ = select.select([self.sock], [], [], within)
        return bool(readable) and self.sock.recv(1, socket.MSG_PEEK) == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
