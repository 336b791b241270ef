"""The slim install (`pip install .`: boto3 and the CLI) is enough to roll back and read
status on an environment released through Pulumi, with no Pulumi CLI, SDK, Helm, Envoy or
Postgres anywhere: what the rollback workflow installs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipelines.cli_env import AWS_ENV, Env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with `pip install .` of a copy of the project (nothing else)."""
    base = tmp_path_factory.mktemp("slim")
    source = base / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(ROOT / "pipelines", source / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "infra", source / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(source),
        ],
        check=True,
        timeout=600,
    )
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file())
    print(f"slim install: {time.monotonic() - started:.1f}s, {size / 2**20:.0f} MiB")
    yield venv


def test_the_slim_install_has_none_of_the_heavy_parts(slim_venv: Path) -> None:
    for module in ("pulumi", "pulumi_aws", "helm_python", "envoy", "pgserver", "asyncpg", "httpx"):
        probe = subprocess.run(
            [str(slim_venv / "bin" / "python"), "-c", f"import {module}"], capture_output=True
        )
        assert probe.returncode != 0, f"{module} is in the slim install"


def test_rollback_and_status_with_aws_credentials_alone(env: Env, slim_venv: Path) -> None:
    spec = env.spec
    spec["deployer"] = {"type": "pulumi", "stack": "prod"}  # released through Pulumi
    env.write_spec(spec)
    assert (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cutover",
                "release",
                "--image",
                "v2",
                "--strategy",
                "all-at-once",
                "--env",
                str(env.file),
            ],
            env={**os.environ, **AWS_ENV},
            capture_output=True,
        ).returncode
        != 0
    )  # a release does need Pulumi: it says so and changes nothing
    env.deployer.deploy("green", "v2", lambda _line: None)  # green took traffic earlier, say
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "pulumi").exists()
    )
    slim = {
        "PATH": f"{slim_venv / 'bin'}{os.pathsep}{path}",
        "HOME": os.environ.get("HOME", "/root"),
        **AWS_ENV,
    }

    def cutover(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(slim_venv / "bin" / "cutover"), *args, "--env", str(env.file), "--json"],
            env=slim,
            capture_output=True,
            text=True,
            timeout=120,
        )

    status = cutover("status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["active"] == "blue"
    rolled = cutover("rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert "nothing to roll back" in json.loads(rolled.stdout)["reason"]
    history = cutover("history")
    assert history.returncode == 0 and json.loads(history.stdout)[0]["operation"] == "rollback"
    shifted = cutover("shift", "--to", "green", "--weight", "10")
    assert shifted.returncode == 0, shifted.stderr
    assert env.weights() == {"blue": 90, "green": 10}
    back = cutover("rollback")
    assert back.returncode == 0, back.stderr
    assert env.weights() == {"blue": 100, "green": 0}
