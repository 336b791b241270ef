"""ALB access logs: one private, SSE-S3, TLS-only S3 bucket per stack that expires its logs,
with a bucket policy for Elastic Load Balancing's log delivery in the stack's region (the
regional ELB account in regions older than August 2022, the service principal in newer
ones), and each ALB writing to it under its color, after the policy exists."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cutover_infra.components.access_logs import (
    LOG_DELIVERY_SERVICE,
    access_logs_policy,
    log_delivery_principal,
    uses_elb_account,
)
from cutover_infra.config import ConfigError, parse

from tests.infra.harness import ELB_ACCOUNTS, ROOT, Run, run_program
from tests.infra.test_config import mutated

BUCKET = "aws:s3/bucket:Bucket"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
ALB = "aws:lb/loadBalancer:LoadBalancer"
ACCOUNT = "123456789012"  # the mocks' caller identity
COLORS = ("blue", "green")


def config(**changes: Any) -> tuple[dict[str, str], list[str]]:
    """Pulumi.prod.yaml as the engine passes it, `cutover:` keys changed (None removes one)."""
    return mutated("prod", **changes)


@pytest.fixture(scope="module")
def prod() -> Run:
    return run_program("prod")


def policy_of(run: Run) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(run.one(POLICY).inputs["policy"])
    return document


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "region", ["eu-west-1", "us-east-1", "ap-southeast-3", "us-gov-west-1", "cn-north-1"]
)
def test_regions_older_than_august_2022_deliver_from_the_regional_elb_account(region: str) -> None:
    assert uses_elb_account(region)
    arn = "arn:aws:iam::156460612806:root"
    assert log_delivery_principal(region, arn) == {"AWS": arn}
    with pytest.raises(ValueError, match=f"{region} delivers ALB access logs from the regional ELB account"):
        log_delivery_principal(region, None)


@pytest.mark.parametrize(
    "region", ["eu-central-2", "ap-southeast-5", "il-central-1", "mx-central-1", "ca-west-1"]
)
def test_newer_regions_deliver_as_the_service_principal(region: str) -> None:
    assert not uses_elb_account(region)
    assert log_delivery_principal(region) == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert log_delivery_principal(region, "arn:aws:iam::1:root") == {"Service": LOG_DELIVERY_SERVICE}


def test_the_policy_lets_log_delivery_put_objects_under_the_prefixes_only_and_denies_plain_http() -> None:
    arn = "arn:aws:s3:::logs"
    allow, deny = access_logs_policy(arn, ["blue", "green"], ACCOUNT, {"Service": LOG_DELIVERY_SERVICE})[
        "Statement"
    ]
    assert allow == {
        "Sid": "ElbAccessLogDelivery",
        "Effect": "Allow",
        "Principal": {"Service": LOG_DELIVERY_SERVICE},
        "Action": "s3:PutObject",
        "Resource": [f"{arn}/blue/AWSLogs/{ACCOUNT}/*", f"{arn}/green/AWSLogs/{ACCOUNT}/*"],
    }
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [arn, f"{arn}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --------------------------------------------------------------------------- the program


def test_one_private_encrypted_expiring_bucket_per_stack(prod: Run) -> None:
    run = prod
    bucket = run.one(BUCKET)
    assert bucket.parent_type == "cutover:traffic:AccessLogs"
    assert bucket.inputs["bucketPrefix"] == "cutover-prod-alb-logs-"
    assert bucket.inputs["forceDestroy"] is False and bucket.protect
    assert bucket.inputs["tags"]["tier"] == "production"
    name = bucket.inputs["bucketPrefix"] + "20260101000000000000000001"  # the mocks' provider-made name
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert block == {
        "bucket": name,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    ownership = run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership == {"bucket": name, "rule": {"objectOwnership": "BucketOwnerEnforced"}}
    (encryption,) = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs["rules"]
    assert encryption == {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}  # SSE-S3 only
    (rule,) = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert rule["status"] == "Enabled" and rule["filter"] == {}  # empty filter: every object
    assert rule["expiration"] == {"days": 365}  # Pulumi.prod.yaml's loadBalancer.accessLogRetentionDays
    assert all(
        r.parent_type == "cutover:traffic:AccessLogs" for r in run.resources if r.type.startswith("aws:s3/")
    )


def test_eu_west_1_grants_its_elb_account_and_every_alb_logs_after_the_policy(prod: Run) -> None:
    run = prod
    name = run.outputs["accessLogsBucket"]
    (allow, deny) = policy_of(run)["Statement"]
    assert allow["Principal"] == {"AWS": f"arn:aws:iam::{ELB_ACCOUNTS['eu-west-1']}:root"}
    assert allow["Resource"] == [f"arn:aws:s3:::{name}/{c}/AWSLogs/{ACCOUNT}/*" for c in COLORS]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    policy = run.one(POLICY)
    assert policy.inputs["bucket"] == name
    assert policy.depends_on == {"prod-access-logs-public-access", "prod-access-logs-ownership"}
    for color in COLORS:
        alb = f"prod-{color}-lb-alb"
        (found,) = [r for r in run.of_type(ALB) if r.name == alb]
        assert found.inputs["accessLogs"] == {"bucket": name, "prefix": color, "enabled": True}
        assert found.depends_on == {policy.name}  # AWS checks write access when logging is turned on


def test_a_newer_region_grants_the_service_principal_and_never_asks_for_an_elb_account() -> None:
    zones = [f"eu-central-2{z}" for z in "abc"]
    flat, secrets = config(
        **{"aws:region": "eu-central-2", "network": {"cidr": "10.20.0.0/16", "availabilityZones": zones}}
    )
    run = run_program("prod", flat, secrets)  # the mocks fail a getServiceAccount for this region
    (allow, _deny) = policy_of(run)["Statement"]
    assert allow["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}


def test_retention_and_teardown_come_from_config() -> None:
    flat, secrets = config(loadBalancer={"accessLogRetentionDays": 30}, teardown="true")
    run = run_program("prod", flat, secrets)
    (rule,) = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert rule["expiration"] == {"days": 30}
    bucket = run.one(BUCKET)
    assert bucket.inputs["forceDestroy"] is True and not bucket.protect  # `pulumi destroy` then removes it


@pytest.mark.parametrize("value", [0, -1, 3654, "90", True, 1.5])
def test_a_bad_retention_is_refused_naming_the_key(value: object) -> None:
    import yaml

    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    raw = {k.removeprefix("cutover:"): v for k, v in document.items() if k.startswith("cutover:")}
    raw["loadBalancer"] = {"accessLogRetentionDays": value}
    with pytest.raises(
        ConfigError, match=r"^cutover:loadBalancer\.accessLogRetentionDays must be a whole number"
    ):
        parse(raw, stack="prod", region="eu-west-1", is_secret=lambda _key: True)
    raw["loadBalancer"] = {}
    settings = parse(raw, stack="prod", region="eu-west-1", is_secret=lambda _key: True)
    assert settings.load_balancer.access_log_retention_days == 90  # the default
