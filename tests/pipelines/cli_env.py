"""`cutover` as a subprocess against a strict moto server (Route53 that rejects a DELETE
unless it matches the live record exactly, and the DynamoDB tables) with real ledger
processes as the colors: the helpers the CLI tests share. The fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3

from cutover.adapters.local_deployer import LocalDeployer

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@dataclass
class Env:
    file: Path
    endpoint: str
    zone: str
    deployer: LocalDeployer

    @property
    def spec(self) -> dict[str, Any]:
        return dict(json.loads(self.file.read_text()))

    def write_spec(self, spec: dict[str, Any]) -> None:
        self.file.write_text(json.dumps(spec))

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="eu-west-1", **_keys())

    def records(self) -> list[dict[str, Any]]:
        return list(
            self.client("route53").list_resource_record_sets(HostedZoneId=self.zone)["ResourceRecordSets"]
        )

    def weights(self) -> dict[str, int]:
        return {r["SetIdentifier"]: r["Weight"] for r in self.records() if r.get("SetIdentifier")}

    def history_items(self) -> int:
        return int(self.client("dynamodb").scan(TableName="history")["Count"])

    def set_weights(self, blue: int, green: int) -> None:
        """What a human does in the console: both weighted records edited, the generation
        record left alone."""
        records = [r for r in self.records() if r.get("SetIdentifier")]
        changes = []
        for record in records:
            new = {**record, "Weight": blue if record["SetIdentifier"] == "blue" else green}
            changes += [
                {"Action": "DELETE", "ResourceRecordSet": record},
                {"Action": "CREATE", "ResourceRecordSet": new},
            ]
        self.client("route53").change_resource_record_sets(
            HostedZoneId=self.zone, ChangeBatch={"Changes": changes}
        )

    def history(self) -> list[dict[str, Any]]:
        return list(as_json(cutover(self, "history", "--json")))

    def lock_item(self) -> dict[str, Any] | None:
        item = (
            self.client("dynamodb")
            .get_item(TableName="locks", Key={"lock_id": {"S": "cli-test"}})
            .get("Item")
        )
        return dict(item) if item else None

    def lease_expires_at(self) -> float:
        item = self.lock_item()
        return float(item["expires_at"]["N"]) if item else 0.0

    def expire_lease(self) -> None:
        """What waiting out the lease of a dead holder does, without the wait: the lock item
        stays (owner, token), its `expires_at` is put in the past."""
        item = self.lock_item()
        assert item is not None and self.lease_expires_at() > time.time(), item  # held, live
        self.client("dynamodb").update_item(
            TableName="locks",
            Key={"lock_id": {"S": "cli-test"}},
            UpdateExpression="SET expires_at = :past",
            ConditionExpression="#t = :t",
            ExpressionAttributeNames={"#t": "token"},
            ExpressionAttributeValues={":past": {"N": str(time.time() - 1)}, ":t": item["token"]},
        )


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def cutover(env: Env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args, "--env", str(env.file)],
        env={**os.environ, **AWS_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cutover(env: Env, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cutover", *args, "--env", str(env.file)],
        env={**os.environ, **AWS_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Follow:
    """The lines a running process writes to one of its pipes, read as they come, so that a
    test can wait for what the process says (e.g. that it is cancelling) instead of sleeping."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(list(self.lines)):
            assert self._thread.is_alive(), "".join(self.lines)  # the pipe closed first
            assert time.monotonic() < deadline, f"timed out waiting; so far:\n{''.join(self.lines)}"
            time.sleep(0.02)

    def text(self, timeout: float = 30.0) -> str:
        """Everything, once the pipe has closed."""
        self._thread.join(timeout)
        return "".join(self.lines)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)
