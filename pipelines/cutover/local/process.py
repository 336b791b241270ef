"""Local processes: start one, wait until a probe answers, stop it (signal, grace, SIGKILL, reap).

The one copy of this logic, used by the local deployer, Envoy, the benchmarks and the tests.
`cutover status` imports this module (through the local deployer): httpx is imported only
when an HTTP probe runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

Probe = Callable[[], bool]
"""True when the thing waited for is there; never raises for "not yet"."""

KILL_WAIT_SECONDS = 5.0  # after SIGKILL, how long to wait for a pid to be gone


class NotReady(RuntimeError):
    """A wait ran out of time, or the process exited before it was ready."""


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs. A zombie (exited, not yet reaped by its parent) is not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is our exited child, so no zombie stays.

    Not our child (started by another cutover command): its own parent reaps it."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(probe: Probe, timeout: float, *, what: str | None = None, interval: float = 0.05) -> None:
    """Call `probe` (at least once) until it returns True.

    Raises NotReady naming `what` (default: the probe itself) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise NotReady(f"{what or probe}: not within {timeout:g}s")
        time.sleep(interval)


def _gone(pids: Sequence[int]) -> bool:
    for pid in pids:
        reap(pid)
    return not any(pid_alive(pid) for pid in pids)


def wait_pids_exit(pids: Iterable[int], timeout: float, *, interval: float = 0.05) -> bool:
    """Wait until none of `pids` runs, reaping those that are our children; True if so in time."""
    waited = list(pids)
    try:
        wait_until(lambda: _gone(waited), timeout, interval=interval)
    except NotReady:
        return False
    return True


def stop_pids(pids: Iterable[int], *, grace: float, sig: int = signal.SIGTERM) -> bool:
    """Stop processes known by pid only (not necessarily our children): `sig` to all at once,
    wait up to `grace` seconds for all, then SIGKILL those left. True if all exited within grace."""
    stopping = list(pids)
    for pid in stopping:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    if wait_pids_exit(stopping, grace):
        return True
    for pid in stopping:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_pids_exit(stopping, KILL_WAIT_SECONDS)
    return False


def stop_pid(pid: int, *, grace: float, sig: int = signal.SIGTERM) -> bool:
    """`stop_pids` for one pid."""
    return stop_pids([pid], grace=grace, sig=sig)


class PipeLines:
    """The lines a running process writes to one of its pipes, read as they come (a thread per
    pipe), so a caller can wait for what the process says instead of sleeping."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def open(self) -> bool:
        """Whether the pipe may still bring lines (the writer has not closed it)."""
        return self._thread.is_alive()

    def wait_for(
        self,
        condition: Callable[[list[str]], bool],
        timeout: float,
        process: subprocess.Popen[str] | None = None,
    ) -> bool:
        """Until `condition(lines so far)` holds: False if the time runs out, or the pipe closes
        or `process` exits first (a child that inherited the pipe may keep it open)."""
        deadline = time.monotonic() + timeout
        while not condition(list(self.lines)):
            if not self.open or (process is not None and process.poll() is not None):
                time.sleep(0.02)  # what the writer said last may still be on its way
                return condition(list(self.lines))
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def text(self, timeout: float = 30.0) -> str:
        """Everything, once the pipe has closed (or what came within `timeout`)."""
        self._thread.join(timeout)
        return "".join(self.lines)


class HttpProbe:
    """A probe: GET `url` answers `status`. Remembers the last other answer, for messages."""

    def __init__(self, url: str, *, status: int = 200, timeout: float = 1.0) -> None:
        self.url = url
        self.status = status
        self.timeout = timeout
        self.last = "no answer"

    def __call__(self) -> bool:
        import httpx

        try:
            answer = httpx.get(self.url, timeout=self.timeout)
        except httpx.HTTPError as error:
            self.last = type(error).__name__
            return False
        if answer.status_code == self.status:
            return True
        self.last = f"{answer.status_code} {answer.text[:200]}"
        return False

    def __str__(self) -> str:
        return f"GET {self.url} answering {self.status} (last: {self.last})"


def tcp_probe(host: str, port: int, timeout: float = 0.5) -> Probe:
    """A probe: something accepts TCP connections on `host`:`port`."""

    def accepts() -> bool:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False

    return accepts


class LocalProcess:
    """A child process, its output in a log: started, waited on until ready, stopped and reaped."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path | None, log: IO[bytes] | None) -> None:
        self.proc = proc
        self.log_path = log_path
        self._log = log  # the anonymous log file, when there is no log_path

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> LocalProcess:
        """Start `argv`: stdin from /dev/null, stdout and stderr appended to `log_path` (None: an
        anonymous temporary file, closed by `stop`). `env` None inherits ours. `new_session`: its
        own session, so it outlives us and our terminal's Ctrl-C does not reach it."""
        log: IO[bytes]
        if log_path is None:
            log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        else:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        except BaseException:
            log.close()
            raise
        if log_path is None:
            return cls(proc, None, log)
        log.close()  # the child has its own copy
        return cls(proc, log_path, None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal that ended it); None while it runs."""
        return self.proc.poll()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code once it has exited; `subprocess.TimeoutExpired` after `timeout` s."""
        return self.proc.wait(timeout)

    def wait_ready(
        self, probe: Probe, timeout: float, *, what: str | None = None, interval: float = 0.05
    ) -> None:
        """Until `probe` answers True. NotReady, with the log's tail, if the process exits
        first (checked before each probe) or `timeout` seconds pass."""
        try:
            wait_until(lambda: not self.alive or probe(), timeout, interval=interval)
        except NotReady:
            raise NotReady(f"{what or probe}: not within {timeout:g}s; {self._output()}") from None
        if not self.alive:
            raise NotReady(
                f"{what or probe}: the process exited with {self.returncode} before it was ready; "
                + self._output()
            )

    def stop(self, *, grace: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """`sig`, then SIGKILL if it has not exited after `grace` seconds; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL and reap; its exit code."""
        return self.stop(sig=signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of its output."""
        try:
            if self._log is not None:
                self._log.seek(0)
                text = self._log.read().decode(errors="replace")
            elif self.log_path is not None:
                text = self.log_path.read_text(errors="replace")
            else:
                return "(no log)"
        except (FileNotFoundError, ValueError):  # ValueError: the anonymous log is closed
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _output(self) -> str:
        where = f" ({self.log_path})" if self.log_path is not None else ""
        return f"its output{where}:\n{self.log_tail()}"
