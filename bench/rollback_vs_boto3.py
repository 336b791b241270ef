"""`cutover rollback` as a whole process against a moto server, versus a bare boto3 script
making the same change and waiting for INSYNC (also a whole process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

from bench.harness import median, start_moto
from cutover import envfile
from cutover.adapters.local_deployer import LocalDeployer
from cutover.local.ports import free_port
from cutover.model import COLORS, Color
from tests.pipelines import moto_quirks
from tests.pipelines.conftest import create_zone

ROUNDS = 5
AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "eu-west-1"}


@dataclass(frozen=True)
class Result:
    cutover_seconds: float
    bare_seconds: float

    @property
    def ratio(self) -> float:
        return self.cutover_seconds / self.bare_seconds


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env={**os.environ, **AWS}, check=True, capture_output=True)
    return time.perf_counter() - started


def run(database_url: str) -> Result:
    original = moto_quirks.allow_recreating_records()
    server, endpoint = start_moto()
    os.environ.update(AWS)
    with tempfile.TemporaryDirectory() as tmp:
        ports: dict[Color, list[int]] = {"blue": [free_port()], "green": [free_port()]}
        deployer = LocalDeployer(
            Path(tmp) / "colors", ports, {"DATABASE_URL": database_url, "DRAIN_SECONDS": "0"}
        )
        try:
            route53 = boto3.client("route53", endpoint_url=endpoint)
            zone = create_zone(route53, blue=100, green=0)  # the first shift records blue as known good
            for color in COLORS:
                deployer.deploy(color, "v1", lambda _line: None)
            env_file = Path(tmp) / "bench.json"
            spec = envfile.EnvFile(
                name="bench",
                router=envfile.Route53Router(hosted_zone_id=zone, record_name="ledger.example.com"),
                deployer=envfile.LocalDeployer(state_dir=str(Path(tmp) / "colors"), ports=ports),
                lock=envfile.FileLock(path=str(Path(tmp) / "lock.json")),
                history=envfile.JsonFile(path=str(Path(tmp) / "history.jsonl")),
                aws=envfile.Aws(region="eu-west-1", endpoint_url=endpoint),
                colors={c: envfile.ColorEntry(endpoint=f"http://127.0.0.1:{ports[c][0]}") for c in COLORS},
            )
            env_file.write_text(json.dumps(spec.to_dict()))
            cutover_times, bare_times = [], []
            to_green = [
                sys.executable,
                "-m",
                "cutover",
                "shift",
                "--to",
                "green",
                "--weight",
                "100",
                "--env",
                str(env_file),
            ]
            for _ in range(ROUNDS):
                subprocess.run(to_green, env={**os.environ, **AWS}, check=True, capture_output=True)
                cutover_times.append(
                    _timed([sys.executable, "-m", "cutover", "rollback", "--env", str(env_file)])
                )
                subprocess.run(to_green, env={**os.environ, **AWS}, check=True, capture_output=True)
                bare_times.append(
                    _timed(
                        [sys.executable, str(Path(__file__).with_name("bare_rollback.py")), endpoint, zone]
                    )
                )
        finally:
            deployer.stop("blue")
            deployer.stop("green")
            server.stop()
            moto_quirks.restore(original)
    return Result(median(cutover_times), median(bare_times))
