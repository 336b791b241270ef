"""cutover.local.process: real short-lived Python children, started, probed and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.adapters import local_deployer
from cutover.local import process as local_process
from cutover.local.ports import free_port
from cutover.local.process import (
    HttpProbe,
    LocalProcess,
    NotReady,
    PipeLines,
    pid_alive,
    stop_pid,
    tcp_probe,
    wait_pids_exit,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

# Ignores SIGTERM, then says so (its log is how the test knows the handler is in place).
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ignoring', flush=True); time.sleep(120)"
SLEEPER = "import time; print('sleeping', flush=True); time.sleep(120)"


def said(process: LocalProcess, word: str) -> bool:
    return word in process.log_tail()


def test_an_http_server_is_ready_when_it_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "logs" / "http.log"  # the directory is created
    server = LocalProcess.start(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], log_path=log, cwd=tmp_path
    )
    try:
        server.wait_ready(HttpProbe(f"http://127.0.0.1:{port}/"), timeout=30)
        assert server.alive and pid_alive(server.pid)
        assert tcp_probe("127.0.0.1", port)()
    finally:
        code = server.stop(grace=10)
    assert code == -signal.SIGTERM
    assert not server.alive and not pid_alive(server.pid)
    assert not tcp_probe("127.0.0.1", port)()
    assert "GET / HTTP/1.1" in log.read_text()  # its output went to the log file


def test_a_process_that_exits_before_it_is_ready_fails_at_once_with_its_output(tmp_path: Path) -> None:
    script = "import sys; print('loading config'); sys.exit('no such database: ledger')"
    process = LocalProcess.start([sys.executable, "-c", script], log_path=tmp_path / "app.log")
    never = HttpProbe(f"http://127.0.0.1:{free_port()}/health/ready")
    # A timeout far longer than the test's: only the exit can end this wait.
    with pytest.raises(NotReady) as failed:
        process.wait_ready(never, timeout=600)
    message = str(failed.value)
    assert "exited with 1 before it was ready" in message
    assert "loading config" in message and "no such database: ledger" in message
    assert str(tmp_path / "app.log") in message and never.url in message


def test_not_ready_in_time_names_what_was_awaited_and_leaves_the_process_running(tmp_path: Path) -> None:
    process = LocalProcess.start([sys.executable, "-c", SLEEPER], log_path=tmp_path / "sleeper.log")
    try:
        wait_until(lambda: said(process, "sleeping"), 30, what="the sleeper's first line")
        with pytest.raises(NotReady, match=r"^the sleeper answering: not within 0\.2s; its output") as late:
            process.wait_ready(lambda: False, timeout=0.2, what="the sleeper answering")
        assert "sleeping" in str(late.value)
        assert process.alive
    finally:
        process.stop(grace=10)


def test_an_http_probe_remembers_the_last_answer_it_did_not_want(tmp_path: Path) -> None:
    port = free_port()
    server = LocalProcess.start(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], cwd=tmp_path
    )
    try:
        refused = HttpProbe(f"http://127.0.0.1:{free_port()}/")
        assert not refused() and refused.last == "ConnectError"
        wait_until(HttpProbe(f"http://127.0.0.1:{port}/"), 30)
        missing = HttpProbe(f"http://127.0.0.1:{port}/nothing-here")
        assert not missing()
        assert missing.last.startswith("404 ") and "(last: 404 " in str(missing)
        assert HttpProbe(f"http://127.0.0.1:{port}/nothing-here", status=404)()
    finally:
        server.stop(grace=10)


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    process = LocalProcess.start([sys.executable, "-c", STUBBORN])  # an anonymous log
    process.wait_ready(lambda: said(process, "ignoring"), timeout=30)
    assert process.stop(grace=0.5) == -signal.SIGKILL
    assert not pid_alive(process.pid)
    assert process.log_tail() == "(no log)"  # stop closed the anonymous log


def test_a_zombie_is_not_alive(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        os.kill(child.pid, 0)  # the pid still exists...
        assert not pid_alive(child.pid)  # ...but it runs no more
    finally:
        assert child.wait(10) == 0


def spawn_orphan(script: str, tmp_path: Path) -> int:
    """A process that is not our child (its parent has exited), waiting until it has printed."""
    launcher = (
        "import subprocess, sys\n"
        f"log = open({str(tmp_path / 'orphan.log')!r}, 'ab')\n"
        f"p = subprocess.Popen([sys.executable, '-c', {script!r}], start_new_session=True,\n"
        "                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)\n"
        "print(p.pid)"
    )  # the orphan holds none of our pipes, so `run` returns as soon as the launcher exits
    pid = int(
        subprocess.run([sys.executable, "-c", launcher], capture_output=True, check=True, text=True).stdout
    )
    log = tmp_path / "orphan.log"
    wait_until(lambda: log.exists() and log.read_text().strip() != "", 30, what="the orphan's first line")
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # not ours to reap
    return pid


def kill_if_left(pid: int) -> None:
    """Whatever the test found, the orphan it started does not outlive it."""
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_stop_pid_stops_a_process_that_is_not_our_child(tmp_path: Path) -> None:
    pid = spawn_orphan(SLEEPER, tmp_path)
    try:
        assert pid_alive(pid)
        assert stop_pid(pid, grace=30) is True
        assert not pid_alive(pid)
    finally:
        kill_if_left(pid)


def test_stop_pid_kills_a_non_child_that_ignores_sigterm(tmp_path: Path) -> None:
    pid = spawn_orphan(STUBBORN, tmp_path)
    try:
        assert stop_pid(pid, grace=0.5) is False  # it did not exit within the grace...
        assert not pid_alive(pid)  # ...and was killed
    finally:
        kill_if_left(pid)


def test_waiting_for_pids_to_exit_reaps_our_children(tmp_path: Path) -> None:
    process = LocalProcess.start([sys.executable, "-c", SLEEPER], log_path=tmp_path / "sleeper.log")
    try:
        assert wait_pids_exit([process.pid], 0.1) is False
        process.send_signal(signal.SIGTERM)
        assert wait_pids_exit([process.pid], 30) is True
        with pytest.raises(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)  # already reaped: no zombie left
    finally:
        process.stop(grace=1)


def test_wait_until_probes_at_least_once_and_names_what_it_waited_for() -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return len(calls) == 1

    wait_until(probe, 0)  # no time at all, yet the probe ran and answered
    with pytest.raises(NotReady, match=r"^green's routes: not within 0\.05s$"):
        wait_until(lambda: False, 0.05, what="green's routes")


def test_the_local_deployer_still_exports_pid_alive() -> None:
    assert local_deployer.pid_alive is local_process.pid_alive


def _talker(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_pipe_lines_are_read_as_they_come_and_waited_for() -> None:
    child = _talker(
        "import sys, time; print('one', flush=True); time.sleep(0.3); print('baking', flush=True); time.sleep(30)"
    )
    try:
        assert child.stdout is not None
        lines = PipeLines(child.stdout)
        assert lines.wait_for(lambda got: any("baking" in line for line in got), 10, child)
        assert lines.lines == ["one\n", "baking\n"] and lines.open
        assert not lines.wait_for(lambda got: len(got) > 2, 0.2, child)  # time runs out: False
    finally:
        child.kill()
        child.wait()
    assert lines.text(5) == "one\nbaking\n" and not lines.open


def test_waiting_on_pipe_lines_ends_when_the_process_exits_without_saying_it() -> None:
    child = _talker("print('starting', flush=True)")
    assert child.stdout is not None
    lines = PipeLines(child.stdout)
    assert not lines.wait_for(lambda got: any("baking" in line for line in got), 30, child)
    assert child.wait(5) == 0 and lines.text(5) == "starting\n"
    last_words = _talker("print('baking', flush=True)")  # said just before exiting: still seen
    assert last_words.stdout is not None
    assert PipeLines(last_words.stdout).wait_for(lambda got: bool(got), 30, last_words)
    last_words.wait(5)
