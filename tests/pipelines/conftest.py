"""AWS through moto: a hosted zone with the weighted records and tables the Pulumi program
creates, and a strict Route53 double that, like real Route53, rejects a DELETE that does not
match the live record exactly (moto does not)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.pipelines import moto_quirks

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
    zone = client.create_hosted_zone(Name="example.com", CallerReference="cutover-tests")["HostedZone"]["Id"]
    changes = [
        {"Action": "CREATE", "ResourceRecordSet": record}
        for record in (weighted("blue", blue), weighted("green", green), generation_record(0))
    ]
    client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    return str(zone)


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
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


@pytest.fixture
def route53(aws: None) -> Any:
    return boto3.client("route53")


def create_release_tables(client: Any) -> None:
    """The lock and history tables, keyed as the Pulumi program creates them."""
    client.create_table(
        TableName="locks",
        KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName="history",
        KeySchema=[
            {"AttributeName": "env", "KeyType": "HASH"},
            {"AttributeName": "sort_key", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "env", "AttributeType": "S"},
            {"AttributeName": "sort_key", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def dynamodb(aws: None) -> Any:
    client = boto3.client("dynamodb")
    create_release_tables(client)
    return client
