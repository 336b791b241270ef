"""The local deployer runs any service by configuration (`deployer.command`, `deployer.live_path`):
greeter (examples/greeter) deployed from an environment file, as `cutover release` builds it."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cutover import envconfig, envfile
from cutover.adapters.local_deployer import LocalDeployer, default_command, pid_alive
from cutover.build import build_deployer
from cutover.local.ports import free_port
from cutover.local.process import NotReady
from cutover.model import BadInput, Color

GREETER_DIR = Path(__file__).resolve().parents[2] / "examples" / "greeter"


def greeter_file(tmp_path: Path, ports: dict[Color, list[int]], **deployer: Any) -> Path:
    """An environment file whose local deployer runs greeter."""
    settings: dict[str, Any] = {
        "command": [sys.executable, "-m", "greeter"],
        "live_path": "/livez",
        "env": {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(GREETER_DIR), os.environ.get("PYTHONPATH")])),
            "DRAIN_SECONDS": "0.2",
            "SHUTDOWN_TIMEOUT_SECONDS": "2",
        },
        "image_env": {"v-bad": {"HTTP_KEEP_ALIVE_SECONDS": "forever"}},
        **deployer,
    }
    spec = envfile.EnvFile(
        name="greeter-test",
        router=envfile.EnvoyRouter(layout={"listener_port": 10000}),
        deployer=envfile.LocalDeployer(state_dir=str(tmp_path / "colors"), ports=ports, **settings),
        lock=envfile.FileLock(path="lock.json"),
        history=envfile.JsonFile(path="history.jsonl"),
        colors={c: envfile.ColorEntry(endpoint=f"http://127.0.0.1:{ports[c][0]}") for c in ports},
        ready_path="/readyz",
    )
    path = tmp_path / "greeter-test.json"
    path.write_text(json.dumps(spec.to_dict()))
    return path


@pytest.fixture
def deployer(tmp_path: Path) -> Iterator[LocalDeployer]:
    ports: dict[Color, list[int]] = {"blue": [free_port(), free_port()], "green": [free_port()]}
    built = build_deployer(envconfig.load(str(greeter_file(tmp_path, ports))))
    assert isinstance(built, LocalDeployer)
    try:
        yield built
    finally:
        built.stop("blue")
        built.stop("green")


def test_greeter_is_deployed_by_configuration_waited_on_livez_and_stopped_by_pid(
    deployer: LocalDeployer,
) -> None:
    assert deployer.command == [sys.executable, "-m", "greeter"] and deployer.live_path == "/livez"
    progress: list[str] = []
    deployer.deploy("blue", "v0.1.0", progress.append)

    # deploy returned: every instance answers /livez (greeter has no /health/live)
    ports = deployer.ports["blue"]
    for index, port in enumerate(ports):
        answer = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=5)
        assert answer.status_code == 200
        assert answer.json()["served_by"] == f"blue/blue-{index}"
        assert answer.json()["version"] == "v0.1.0"
        assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5).status_code == 404
    pids = deployer.pids("blue")
    assert len(pids) == 2 and all(pid_alive(pid) for pid in pids)
    assert deployer.current_image("blue") == "v0.1.0"
    assert any("started blue v0.1.0" in line for line in progress)

    deployer.stop("blue")  # by pid: SIGTERM, greeter drains 0.2 s and exits
    assert not any(pid_alive(pid) for pid in pids)
    assert deployer.pids("blue") == [] and deployer.current_image("blue") is None


def test_a_service_that_refuses_to_start_fails_the_deploy_at_once_with_its_line(
    deployer: LocalDeployer,
) -> None:
    started = time.monotonic()
    with pytest.raises(NotReady) as failure:
        deployer.deploy("green", "v-bad", lambda _line: None)
    assert time.monotonic() - started < 10  # not the 30 s start timeout
    message = str(failure.value)
    assert "green-0" in message and "exited before answering /livez" in message
    assert "HTTP_KEEP_ALIVE_SECONDS='forever' is not valid" in message  # greeter's own line
    assert deployer.pids("green") == []


def test_without_command_and_live_path_it_runs_ledger_as_before(tmp_path: Path) -> None:
    ports: dict[Color, list[int]] = {"blue": [8001], "green": [8002]}
    path = greeter_file(tmp_path, ports)
    raw = json.loads(path.read_text())
    del raw["deployer"]["command"], raw["deployer"]["live_path"]
    built = build_deployer(envconfig.parse(raw, path))
    assert isinstance(built, LocalDeployer)
    assert built.command == default_command() == [sys.executable, "-m", "ledger", "serve"]
    assert built.live_path == "/health/live"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("command", [], "`deployer.command` must be the argv of one instance"),
        ("command", ["python", ""], "`deployer.command` must be the argv of one instance"),
        ("command", ["python", 3], "`deployer.command` must be the argv of one instance"),
        ("command", "python -m greeter", "`deployer.command` must be a list"),
        ("live_path", "livez", "`deployer.live_path` must be a path starting with /"),
        ("live_path", "/live z", "`deployer.live_path` must be a path starting with /"),
        ("live_path", "", "`deployer.live_path` must be a str"),
    ],
)
def test_a_bad_command_or_live_path_is_refused_with_one_line(
    tmp_path: Path, key: str, value: Any, says: str
) -> None:
    path = greeter_file(tmp_path, {"blue": [8001], "green": [8002]})
    raw = json.loads(path.read_text())
    raw["deployer"][key] = value
    with pytest.raises(BadInput) as refused:
        envconfig.parse(raw, path)
    assert says in str(refused.value) and "\n" not in str(refused.value)
