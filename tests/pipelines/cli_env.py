"""`cutover` as a subprocess against a strict moto server (Route53 that rejects a DELETE
unless it matches the live record exactly, and the DynamoDB tables) with real ledger
processes as the colors: the helpers the CLI tests share. The fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from cutover.adapters.local_deployer import LocalDeployer
from cutover.local.process import PipeLines

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


class Follow(PipeLines):
    """A process's pipe for a test: waiting for what it says fails the test, with what it said
    so far, when the pipe closes or the time runs out first."""

    def wait_for(
        self,
        condition: Callable[[list[str]], bool],
        timeout: float = 30.0,
        process: subprocess.Popen[str] | None = None,
    ) -> bool:
        so_far = "the pipe closed or the time ran out first; so far:\n"
        assert super().wait_for(condition, timeout, process), so_far + "".join(self.lines)
        return True


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)
