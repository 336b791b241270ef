"""AWS on this machine, for the rehearsal and the tests: a moto server on 127.0.0.1 whose
Route53 behaves like the real one where cutover relies on it (strict DELETEs, atomic
batches: cutover.local.strict_route53), holding what the Pulumi program creates: a hosted
zone with each service's two weighted alias records and generation record, and the
DynamoDB lock and history tables.

moto keeps its data in this process, not in the server: `stop` and `start` take the
endpoint away and bring it back with every record intact (the Route53 API unavailable for
a while), and `reset` empties every backend.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cutover.local import strict_route53
from cutover.local.ports import free_port
from cutover.model import Color

REGION = "eu-west-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# What the process environment needs for botocore's default credential chain.
CREDENTIALS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
ALB_HOSTED_ZONE_ID = "Z32O12XQLNTSW2"  # eu-west-1's canonical zone for ALB alias targets


@dataclass(frozen=True)
class ZoneLayout:
    """The weighted name and where each color's record points (its ALB's DNS name)."""

    zone_name: str = "example.com"
    record_name: str = "ledger.example.com."
    alias_targets: Mapping[Color, str] = field(
        default_factory=lambda: {
            "blue": "blue-alb-123.eu-west-1.elb.amazonaws.com.",
            "green": "green-alb-456.eu-west-1.elb.amazonaws.com.",
        }
    )

    @property
    def generation_name(self) -> str:
        return f"_cutover.{self.record_name}"

    def weighted(self, color: Color, weight: int) -> dict[str, Any]:
        return {
            "Name": self.record_name,
            "Type": "A",
            "SetIdentifier": color,
            "Weight": weight,
            "AliasTarget": {
                "HostedZoneId": ALB_HOSTED_ZONE_ID,
                "DNSName": self.alias_targets[color],
                "EvaluateTargetHealth": True,
            },
        }

    def generation(self, n: int) -> dict[str, Any]:
        return {
            "Name": self.generation_name,
            "Type": "TXT",
            "TTL": 60,
            "ResourceRecords": [{"Value": f'"cutover-generation={n}"'}],
        }


def create_zone(client: Any, layout: ZoneLayout | None = None, blue: int = 100, green: int = 0) -> str:
    """The hosted zone with blue and green weighted records and generation 0; its id."""
    layout = layout or ZoneLayout()
    zone = client.create_hosted_zone(Name=layout.zone_name, CallerReference=f"cutover-{layout.zone_name}")
    zone_id = str(zone["HostedZone"]["Id"])
    create_records(client, zone_id, layout, blue, green)
    return zone_id


def create_records(client: Any, zone_id: str, layout: ZoneLayout, blue: int = 100, green: int = 0) -> None:
    """One service's weighted records and generation 0, in an existing zone (another
    service of the stack: its own name, the same ALBs)."""
    records = (layout.weighted("blue", blue), layout.weighted("green", green), layout.generation(0))
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": r} for r in records]},
    )


def create_release_tables(client: Any, locks: str = "locks", history: str = "history") -> None:
    """The lock and history tables, keyed as the Pulumi program creates them."""
    client.create_table(
        TableName=locks,
        KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName=history,
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


def weighted_records(client: Any, zone_id: str, record_name: str) -> list[dict[str, Any]]:
    """The live weighted records of `record_name`, as Route53 lists them."""
    name = record_name.rstrip(".").lower()
    answer = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return [r for r in answer if r.get("SetIdentifier") and r["Name"].rstrip(".").lower() == name]


def edit_weights_in_console(
    client: Any, zone_id: str, record_name: str, weights: Mapping[Color, int]
) -> None:
    """What a human does in the console: the weighted records edited, the generation record
    left alone (so cutover's compare-and-swap must notice)."""
    changes = []
    for record in weighted_records(client, zone_id, record_name):
        color = record["SetIdentifier"]
        changes += [
            {"Action": "DELETE", "ResourceRecordSet": record},
            {"Action": "CREATE", "ResourceRecordSet": {**record, "Weight": weights[color]}},
        ]
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})


class LocalAws:
    """A moto server on 127.0.0.1 with Route53 made strict for as long as it runs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._undo_strict: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr; the rehearsal's progress is what people read.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        if self._undo_strict is None:
            self._undo_strict = strict_route53.make_strict()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """The endpoint goes away (connections refused); the data stays."""
        if self._server is None:
            return
        self._server.stop()
        inner = getattr(self._server, "_server", None)
        if inner is not None:
            inner.server_close()  # refuse connections, as an unreachable endpoint does
        self._server = None

    def close(self) -> None:
        """Stop, empty moto's backends and undo the strict patch."""
        if self._server is not None:
            self.reset()
        self.stop()
        if self._undo_strict is not None:
            self._undo_strict()
            self._undo_strict = None

    def reset(self) -> None:
        httpx.post(f"{self.endpoint}/moto-api/reset", timeout=10)

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **CREDENTIALS)
