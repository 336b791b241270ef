"""AWS through moto: a hosted zone with the weighted records and tables the Pulumi program
creates, and a strict Route53 double that, like real Route53, rejects a DELETE that does not
match the live record exactly (moto does not)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from cutover import envfile
from cutover.adapters.local_deployer import LocalDeployer
from cutover.local import aws as aws_zone
from cutover.local import strict_route53
from cutover.local.aws import create_release_tables
from cutover.local.database import migrate_database
from cutover.local.ports import free_port
from cutover.local.postgres import EmbeddedPostgres
from cutover.model import COLORS, Color
from tests.pipelines import moto_quirks
from tests.pipelines.cli_env import AWS_ENV, Env, _keys

RECORD = "ledger.example.com."
GENERATION = "_cutover.ledger.example.com."
ALB = {
    "blue": "blue-alb-123.eu-west-1.elb.amazonaws.com.",
    "green": "green-alb-456.eu-west-1.elb.amazonaws.com.",
}
ALB_ZONE = "Z32O12XQLNTSW2"


def weighted(color: str, weight: int) -> dict[str, Any]:
    return {
        "Name": RECORD,
        "Type": "A",
        "SetIdentifier": color,
        "Weight": weight,
        "AliasTarget": {"HostedZoneId": ALB_ZONE, "DNSName": ALB[color], "EvaluateTargetHealth": True},
    }


def generation_record(n: int) -> dict[str, Any]:
    return {
        "Name": GENERATION,
        "Type": "TXT",
        "TTL": 60,
        "ResourceRecords": [{"Value": f'"cutover-generation={n}"'}],
    }


def create_zone(client: Any, blue: int = 100, green: int = 0) -> str:
    """The zone the Pulumi program creates, with the records above (cutover.local.aws)."""
    return aws_zone.create_zone(client, aws_zone.ZoneLayout(), blue, green)


def snapshot(client: Any, zone: str) -> list[dict[str, Any]]:
    return list(client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"])


class StrictRoute53:
    """Delegates to moto, but first checks every DELETE against the live records."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.batches: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def change_resource_record_sets(self, HostedZoneId: str, ChangeBatch: dict[str, Any]) -> Any:
        self.batches.append(copy.deepcopy(ChangeBatch))
        live = snapshot(self._client, HostedZoneId)
        for change in ChangeBatch["Changes"]:
            record = change["ResourceRecordSet"]
            if change["Action"] == "DELETE":
                if record not in live:
                    raise _invalid("Tried to delete resource record set but it was not found")
                live.remove(record)
            elif change["Action"] == "CREATE":
                if any(_same_key(record, existing) for existing in live):
                    raise _invalid("Tried to create resource record set but it already exists")
                live.append(record)
        return self._client.change_resource_record_sets(HostedZoneId=HostedZoneId, ChangeBatch=ChangeBatch)


def _same_key(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["Name"], a["Type"], a.get("SetIdentifier")) == (b["Name"], b["Type"], b.get("SetIdentifier"))


def _invalid(message: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "InvalidChangeBatch", "Message": message}}, "ChangeResourceRecordSets"
    )


@pytest.fixture(autouse=True)
def _route53_like_aws() -> Iterator[None]:
    original = moto_quirks.allow_recreating_records()
    yield
    moto_quirks.restore(original)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


@pytest.fixture
def route53(aws: None) -> Any:
    return boto3.client("route53")


@pytest.fixture
def dynamodb(aws: None) -> Any:
    client = boto3.client("dynamodb")
    create_release_tables(client)
    return client


class MotoServer:
    """A moto server on 127.0.0.1 whose Route53 rejects a DELETE unless it matches the live
    record exactly, as real Route53 does (plain moto accepts it). `stop` and `start` take it
    away and bring it back (its data stays: moto keeps it in this process)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
        inner = getattr(self._server, "_server", None)
        if inner is not None:
            inner.server_close()  # refuse connections, as an unreachable endpoint does


@pytest.fixture
def moto_server() -> Iterator[MotoServer]:
    with strict_route53.strict():
        server = MotoServer()
        server.start()
        httpx.post(f"{server.endpoint}/moto-api/reset")  # moto's backends are per process, not per server
        try:
            yield server
        finally:
            httpx.post(f"{server.endpoint}/moto-api/reset")
            server.stop()


@pytest.fixture
def env(tmp_path: Path, postgres: EmbeddedPostgres, moto_server: MotoServer) -> Iterator[Env]:
    """An environment file for `cutover`: Route53 and DynamoDB on the strict moto server,
    blue running ledger v1 as a real process, green empty."""
    database = postgres.create_database(f"cli_{tmp_path.name[-8:].lower()}")
    migrate_database(database)
    endpoint = moto_server.endpoint
    route53 = boto3.client("route53", endpoint_url=endpoint, region_name="eu-west-1", **_keys())
    zone = create_zone(route53)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="eu-west-1", **_keys())
    create_release_tables(dynamodb)
    ports: dict[Color, list[int]] = {"blue": [free_port()], "green": [free_port()]}
    app_env = {
        "DATABASE_URL": database,
        "DRAIN_SECONDS": "0.3",
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
    }
    state_dir = tmp_path / "colors"
    spec = envfile.EnvFile(
        name="cli-test",
        router=envfile.Route53Router(hosted_zone_id=zone, record_name="ledger.example.com"),
        deployer=envfile.LocalDeployer(state_dir=str(state_dir), ports=ports, env=app_env),
        # A lease no test outlives by accident: a test that needs it over says so (Env.expire_lease).
        lock=envfile.DynamoDBLock(table="locks", lease_seconds=30),
        history=envfile.DynamoDBTable(table="history"),
        aws=envfile.Aws(region="eu-west-1", endpoint_url=endpoint),
        colors={c: envfile.ColorEntry(endpoint=f"http://127.0.0.1:{ports[c][0]}") for c in COLORS},
        gates={
            "ready_successes": 2,
            "ready_interval": 0.1,
            "ready_timeout": 20,
            "bake_seconds": 0.3,
            "health_interval": 0.1,
        },
    )
    file = tmp_path / "cli-test.json"
    file.write_text(json.dumps(spec.to_dict()))
    deployer = LocalDeployer(state_dir, ports, app_env)
    deployer.deploy("blue", "v1", lambda _line: None)
    try:
        yield Env(file, endpoint, zone, deployer)
    finally:
        deployer.stop("blue")
        deployer.stop("green")
