"""The baseline for the rollback benchmark: the least a script can do to move all traffic
to blue with boto3 (one UPSERT batch, then wait for INSYNC). Run as its own process."""

from __future__ import annotations

import sys
import time

import boto3

endpoint, zone = sys.argv[1], sys.argv[2]
client = boto3.client("route53", endpoint_url=endpoint, region_name="eu-west-1")
records = client.list_resource_record_sets(HostedZoneId=zone, StartRecordName="ledger.example.com.")
changes = []
for record in records["ResourceRecordSets"]:
    if record.get("SetIdentifier") in ("blue", "green"):
        record["Weight"] = 100 if record["SetIdentifier"] == "blue" else 0
        changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
change = client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
while client.get_change(Id=change["ChangeInfo"]["Id"])["ChangeInfo"]["Status"] != "INSYNC":
    time.sleep(0.25)
