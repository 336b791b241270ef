"""Day 2 on a real account: `pulumi up` never undoes a cutover, never runs under a release's
lock, and config (not the stack's name) decides protection, teardown, images and networks.

The Route53 and DynamoDB reads the program makes at run time are answered from moto, with
Route53 made strict (a DELETE must match the live record, as on AWS); traffic is moved by
cutover's own Route53 router and the lock taken by cutover's own DynamoDB lock. What
`pulumi up` then sends to Route53 is modelled on the AWS provider: a new record is CREATEd,
an updated one UPSERTed from its inputs, where a property in `ignore_changes` takes the
value held in Pulumi's state (CLOUD-FACTS: Pulumi)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pulumi
import pytest
from cutover_infra.config import ConfigError, SecretRef, ServiceDatabase
from cutover_infra.values import (
    LiveTraffic,
    chart_values,
    live_traffic,
    lock_key,
    lock_refusal,
    split_image,
    traffic_records_regex,
)
from moto import mock_aws

from cutover.adapters.locks import DynamoDBLock
from cutover.adapters.route53 import Route53Router
from cutover.local import strict_route53
from cutover.model import Traffic
from tests.charts.helpers import render
from tests.infra.harness import (
    RecordingMocks,
    Registered,
    Run,
    ledger_values,
    parsed,
    run_program,
    section_with,
    services_with,
    stack_config,
)
from tests.pipelines.cli_env import AWS_ENV

DOMAIN = "ledger.example.com"  # Pulumi.prod.yaml
CONFIG_ZONE = "Z0PRODEXAMPLE1234"
RECORD = "aws:route53/record:Record"
DIGEST = "sha256:" + "c" * 64


# --------------------------------------------------------------------------- moto as the account


@dataclass
class Account:
    route53: Any
    dynamodb: Any
    zone: str  # moto's id of the zone the config calls CONFIG_ZONE

    def mocks(self, alb_prefix: str = "") -> type[RecordingMocks]:
        """Mocks whose data-source reads are answered by this account; `alb_prefix` renames
        the ALBs' DNS names (as a replaced load balancer would)."""
        account = self

        class LiveAccount(RecordingMocks):
            def new_resource(
                self, args: pulumi.runtime.MockResourceArgs
            ) -> tuple[str | None, dict[str, Any]]:
                resource_id, state = super().new_resource(args)
                if args.typ == "aws:lb/loadBalancer:LoadBalancer" and alb_prefix:
                    state["dnsName"] = f"{alb_prefix}-{state['dnsName']}"
                return resource_id, state

            def call(
                self, args: pulumi.runtime.MockCallArgs
            ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
                if args.token == "aws:route53/getRecords:getRecords":
                    assert args.args["zoneId"] == CONFIG_ZONE
                    return {
                        "zoneId": CONFIG_ZONE,
                        "nameRegex": args.args.get("nameRegex"),
                        "resourceRecordSets": data_source_records(
                            account.route53, account.zone, args.args.get("nameRegex")
                        ),
                    }, []
                if args.token == "aws:dynamodb/getTableItem:getTableItem":
                    return table_item(account.dynamodb, args.args["tableName"], args.args["key"])
                return super().call(args)

        return LiveAccount


def data_source_records(client: Any, zone: str, name_regex: str | None) -> list[dict[str, Any]]:
    """What the getRecords data source returns: every record set of the zone whose
    Route53 name (trailing dot included) the regex matches, field for field."""
    found = []
    for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone):
        for r in page["ResourceRecordSets"]:
            if name_regex and not re.search(name_regex, r["Name"]):
                continue
            alias = r.get("AliasTarget")
            found.append(
                {
                    "name": r["Name"],
                    "type": r["Type"],
                    "setIdentifier": r.get("SetIdentifier", ""),
                    "weight": r.get("Weight", 0),
                    "ttl": r.get("TTL", 0),
                    "healthCheckId": r.get("HealthCheckId", ""),
                    "resourceRecords": [{"value": v["Value"]} for v in r.get("ResourceRecords", [])],
                    "aliasTarget": {
                        "dnsName": alias["DNSName"],
                        "hostedZoneId": alias["HostedZoneId"],
                        "evaluateTargetHealth": alias["EvaluateTargetHealth"],
                    }
                    if alias
                    else None,
                }
            )
    return found


def table_item(client: Any, table: str, key: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """What getTableItem returns (the item's attribute JSON); it fails on a missing item."""
    item = client.get_item(TableName=table, Key=json.loads(key), ConsistentRead=True).get("Item")
    if not item:
        return {}, [("item", f"reading DynamoDB Table Item ({table}): empty result")]
    return {"tableName": table, "key": key, "item": json.dumps(item), "id": table}, []


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CUTOVER_LOCK_OWNER", raising=False)
    with mock_aws(), strict_route53.strict():
        route53 = boto3.client("route53")
        zone = route53.create_hosted_zone(Name="example.com", CallerReference="day2")["HostedZone"]["Id"]
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName="cutover-prod-locks",
            KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Account(route53, dynamodb, zone.split("/")[-1])


def prod(**changes: Any) -> tuple[dict[str, str], list[str]]:
    config, secrets = stack_config("prod")
    for key, value in changes.items():
        full = f"cutover:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value if isinstance(value, str) else json.dumps(value)
    return config, secrets


def up(account: Account, alb_prefix: str = "", stack: str = "prod") -> Run:
    config, secrets = prod()
    return run_program(stack, config, secrets, mocks=account.mocks(alb_prefix))


# --------------------------------------------------------------------------- `pulumi up`, modelled


def provider_record(inputs: dict[str, Any]) -> dict[str, Any]:
    """The record set the AWS provider sends for a Record's inputs (TXT values quoted)."""
    rrset: dict[str, Any] = {"Name": inputs["name"], "Type": inputs["type"]}
    if inputs.get("setIdentifier"):
        rrset["SetIdentifier"] = inputs["setIdentifier"]
    if inputs.get("weightedRoutingPolicies"):
        rrset["Weight"] = int(inputs["weightedRoutingPolicies"][0]["weight"])  # the engine sends numbers
    if inputs.get("healthCheckId"):
        rrset["HealthCheckId"] = inputs["healthCheckId"]
    if inputs.get("aliases"):
        alias = inputs["aliases"][0]
        rrset["AliasTarget"] = {
            "DNSName": alias["name"],
            "HostedZoneId": alias["zoneId"],
            "EvaluateTargetHealth": alias["evaluateTargetHealth"],
        }
    if inputs.get("records"):
        rrset["TTL"] = int(inputs["ttl"])
        quote = inputs["type"] == "TXT"
        rrset["ResourceRecords"] = [{"Value": f'"{v}"' if quote else v} for v in inputs["records"]]
    return rrset


def pulumi_up(
    account: Account, records: list[Registered], state: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Apply the declared records as `pulumi up` (no refresh) does; returns the new state.

    An ignored property keeps the state's value; an unchanged record is left alone."""
    new_state = {}
    for record in records:
        inputs = dict(record.inputs)
        old = state.get(record.name)
        if old is not None:
            for prop in record.ignore_changes:
                inputs[prop] = old[prop]
        new_state[record.name] = inputs
        if old == inputs:
            continue
        action = "CREATE" if old is None else "UPSERT"
        account.route53.change_resource_record_sets(
            HostedZoneId=account.zone,
            ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": provider_record(inputs)}]},
        )
    return new_state


def traffic_records(run: Run) -> list[Registered]:
    return [r for r in run.of_type(RECORD) if r.inputs["name"] in (DOMAIN, f"_cutover.{DOMAIN}")]


def declared(run: Run) -> Traffic:
    """The weights and generation the program declared."""
    records = traffic_records(run)
    weights = {
        r.inputs["setIdentifier"]: r.inputs["weightedRoutingPolicies"][0]["weight"]
        for r in records
        if r.inputs.get("setIdentifier")
    }
    (txt,) = [r for r in records if r.inputs["type"] == "TXT"]
    (value,) = txt.inputs["records"]
    return Traffic(weights["blue"], weights["green"], int(value.removeprefix("cutover-generation=")))


def router(account: Account) -> Route53Router:
    return Route53Router(account.route53, account.zone, DOMAIN, sleep=lambda _s: None)


def cut_over_to_green(account: Account) -> Traffic:
    live = router(account).read()
    return router(account).set(Traffic(0, 100), live)


# --------------------------------------------------------------------------- 3: never undo a cutover


def test_an_up_after_a_cutover_declares_what_route53_serves_even_with_new_alias_targets(
    account: Account,
) -> None:
    first = up(account)
    assert declared(first) == Traffic(100, 0, 0)  # nothing live yet: the configured initial weights
    state = pulumi_up(account, traffic_records(first), {})
    assert router(account).read() == Traffic(100, 0, 0)

    assert cut_over_to_green(account) == Traffic(0, 100, 1)

    second = up(account, alb_prefix="replaced")  # new ALBs: the weighted records must be updated
    assert declared(second) == Traffic(0, 100, 1)
    weighted = [r for r in traffic_records(second) if r.inputs.get("setIdentifier")]
    assert all(r.inputs["aliases"][0]["name"].startswith("replaced-") for r in weighted)
    assert all(not r.ignore_changes for r in traffic_records(second))
    pulumi_up(account, traffic_records(second), state)

    # Route53 still serves the cutover, now through the new ALBs, and cutover's next
    # compare-and-swap (DELETE exactly what is live) goes through.
    assert router(account).read() == Traffic(0, 100, 1)
    live = router(account)
    assert live.set(Traffic(100, 0), live.read()) == Traffic(100, 0, 2)


def test_the_model_has_teeth_ignore_changes_with_the_initial_weights_undoes_the_cutover(
    account: Account,
) -> None:
    """What the program declared before: initial weights and generation 0, ignore_changes on
    both. The same `up` then re-sends the state's weights: the cutover is undone."""
    first = up(account)
    state = pulumi_up(account, traffic_records(first), {})
    cut_over_to_green(account)
    second = up(account, alb_prefix="replaced")
    as_before = [
        Registered(
            r.type,
            r.name,
            {
                **r.inputs,
                **(
                    {
                        "weightedRoutingPolicies": [
                            {"weight": 100 if r.inputs["setIdentifier"] == "blue" else 0}
                        ]
                    }
                    if r.inputs.get("setIdentifier")
                    else {"records": ["cutover-generation=0"]}
                ),
            },
            r.parent_type,
            ignore_changes=("weightedRoutingPolicies",) if r.inputs.get("setIdentifier") else ("records",),
        )
        for r in traffic_records(second)
    ]
    pulumi_up(account, as_before, state)
    assert router(account).read() == Traffic(100, 0, 1)  # blue again: the cutover silently undone


def test_live_traffic_reads_weights_and_generation_from_the_data_source(account: Account) -> None:
    initial = {"blue": 100, "green": 0}
    regex = traffic_records_regex(DOMAIN)
    assert live_traffic(data_source_records(account.route53, account.zone, regex), DOMAIN, initial) == (
        LiveTraffic(initial, 0, live=False)
    )
    pulumi_up(account, traffic_records(up(account)), {})
    cut_over_to_green(account)
    account.route53.change_resource_record_sets(  # a neighbour the regex must not pick up
        HostedZoneId=account.zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"x{DOMAIN}",
                        "Type": "A",
                        "SetIdentifier": "blue",
                        "Weight": 7,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.1"}],
                    },
                }
            ]
        },
    )
    records = data_source_records(account.route53, account.zone, regex)
    assert {r["name"] for r in records} == {f"{DOMAIN}.", f"_cutover.{DOMAIN}."}
    assert live_traffic(records, DOMAIN, initial) == LiveTraffic({"blue": 0, "green": 100}, 1, live=True)


def test_a_generation_record_cutover_cannot_read_stops_the_up() -> None:
    broken = [{"name": f"_cutover.{DOMAIN}.", "type": "TXT", "resourceRecords": [{"value": '"hand edit"'}]}]
    with pytest.raises(ValueError, match=r"_cutover\.ledger\.example\.com holds .*fix:"):
        live_traffic(broken, DOMAIN, {"blue": 100, "green": 0})


# --------------------------------------------------------------------------- 3: the lock


def test_up_refuses_while_a_release_holds_the_lock_except_for_that_releases_deployer(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = DynamoDBLock(account.dynamodb, "cutover-prod-locks", "prod", lease_seconds=60)
    lock.acquire("alice@laptop", "release")
    try:
        refused = Run()
        config, secrets = prod()
        with pytest.raises(
            Exception, match=r"cutover release by alice@laptop holds the prod release lock"
        ) as error:
            run_program("prod", config, secrets, run=refused, mocks=account.mocks())
        assert "--break-lock" in str(error.value) and refused.registered == []

        monkeypatch.setenv("CUTOVER_LOCK_OWNER", "bob@ci")  # another operation's deployer
        with pytest.raises(Exception, match="holds the prod release lock"):
            up(account)

        monkeypatch.setenv("CUTOVER_LOCK_OWNER", "alice@laptop")  # the release's own deployer
        assert up(account).registered
    finally:
        lock.release()
    monkeypatch.delenv("CUTOVER_LOCK_OWNER")
    assert up(account).registered  # released: anyone may run


def test_an_expired_lease_does_not_block_the_up(account: Account) -> None:
    stale = DynamoDBLock(account.dynamodb, "cutover-prod-locks", "prod", lease_seconds=60, clock=lambda: 0.0)
    stale.acquire("crashed@runner", "release")
    stale._stop.set()  # the process died: nobody renews it
    try:
        assert up(account).registered
    finally:
        stale.release()


def test_lock_refusal_reads_cutovers_lock_item() -> None:
    item = json.dumps(
        {
            "lock_id": {"S": "prod"},
            "owner": {"S": "alice@laptop"},
            "operation": {"S": "shift"},
            "expires_at": {"N": "1000.5"},
        }
    )
    assert lock_key("prod") == json.dumps({"lock_id": {"S": "prod"}})
    assert "cutover shift by alice@laptop" in (lock_refusal(item, "prod", None, now=990) or "")
    assert lock_refusal(item, "prod", "alice@laptop", now=990) is None
    assert lock_refusal(item, "prod", None, now=1001) is None
    assert lock_refusal(None, "prod", None, now=0) is None


# --------------------------------------------------------------------------- 7: the database CIDR


def test_the_database_cidr_is_the_narrowest_block_of_the_private_subnets() -> None:
    assert parsed("prod").database.cidr == "10.20.0.0/18"  # three /20 private subnets
    assert parsed("staging").database.cidr == "10.30.0.0/19"  # two
    assert parsed("dev").database.cidr == "10.10.0.0/16"  # an existing cluster: its VPC
    assert (
        parsed("dev", database=section_with("dev", "database", cidr="10.10.32.0/20")).database.cidr
        == "10.10.32.0/20"
    )
    with pytest.raises(ConfigError, match=r"cutover:database\.cidr .*fix:"):
        parsed("dev", database=section_with("dev", "database", cidr="10.10.0.0"))


def test_the_chart_limits_postgres_egress_to_the_database_cidr() -> None:
    service = dataclasses.replace(
        parsed("prod").services[0],
        database=ServiceDatabase("secret", url=SecretRef("ledger-database", "DATABASE_URL")),
    )
    values = chart_values(
        service=service,
        color="blue",
        image_repository="123456789012.dkr.ecr.eu-west-1.amazonaws.com/ledger",
        image_tag="v1",
        replicas=2,
        target_group_arn="",
        budget=service.drain,
        vpc_cidr="10.20.0.0/16",
        database_cidr="10.20.0.0/18",
    )
    policies = [
        o for o in render(values, name="ledger-blue", namespace="ledger-blue") if o["kind"] == "NetworkPolicy"
    ]
    postgres = [
        rule
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        if any(p.get("port") == 5432 for p in rule.get("ports", []))
    ]
    assert postgres and all(rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/18"}}] for rule in postgres)


def test_the_database_cidr_and_keep_alive_reach_the_helm_releases() -> None:
    config, secrets = prod(loadBalancer={"idleTimeoutSeconds": 120})
    run = run_program("prod", config, secrets)
    for color in ("blue", "green"):
        values = ledger_values(run, color)
        assert values["database"]["cidr"] == "10.20.0.0/18"
        assert values["aws"]["idleTimeoutSeconds"] == 120 and values["http"]["keepAliveSeconds"] == 135


# --------------------------------------------------------------------------- 2 (half): idle timeout


def test_the_alb_idle_timeout_is_config_and_the_app_keep_alive_must_outlive_it() -> None:
    lb = parsed("prod").load_balancer
    assert (lb.idle_timeout_seconds, lb.app_keep_alive_seconds) == (60, 75)
    lb = parsed("prod", loadBalancer={"idleTimeoutSeconds": 300}).load_balancer
    assert (lb.idle_timeout_seconds, lb.app_keep_alive_seconds) == (300, 315)
    with pytest.raises(ConfigError, match=r"cutover:loadBalancer\.appKeepAliveSeconds \(60\) must be longer"):
        parsed("prod", loadBalancer={"idleTimeoutSeconds": 60, "appKeepAliveSeconds": 60})
    with pytest.raises(
        ConfigError, match=r"cutover:loadBalancer\.idleTimeoutSeconds must be a whole number from 1 to 4000"
    ):
        parsed("prod", loadBalancer={"idleTimeoutSeconds": 4001})
    config, secrets = prod(loadBalancer={"idleTimeoutSeconds": 120})
    albs = run_program("prod", config, secrets).of_type("aws:lb/loadBalancer:LoadBalancer")
    assert [a.inputs["idleTimeout"] for a in albs] == [120, 120]


def test_chart_values_maps_the_keep_alive_and_digest_kwargs() -> None:
    (service,) = [s for s in parsed("dev").services if s.name == "greeter"]  # no database
    common: dict[str, Any] = {
        "service": service,
        "color": "green",
        "image_repository": "r",
        "replicas": 2,
        "target_group_arn": "",
        "budget": service.drain,
        "vpc_cidr": "10.0.0.0/16",
    }
    values = chart_values(image_tag="v1", idle_timeout_seconds=100, **common)
    assert values["aws"]["idleTimeoutSeconds"] == 100 and values["http"]["keepAliveSeconds"] == 115
    values = chart_values(image_tag="v1", idle_timeout_seconds=30, keep_alive_seconds=90, **common)
    assert values["http"]["keepAliveSeconds"] == 90
    assert "http" not in chart_values(image_tag="v1", **common)  # unset: the chart's default
    assert chart_values(image_tag=f"v1@{DIGEST}", **common)["image"] == {
        "repository": "r",
        "tag": "v1",
        "digest": DIGEST,
    }
    assert chart_values(image_tag="v1", image_digest=DIGEST, **common)["image"]["digest"] == DIGEST


# --------------------------------------------------------------------------- 10: images by digest, ECR


def test_an_image_pinned_by_digest_is_accepted_deployed_by_digest_and_exported() -> None:
    assert split_image(f"v1.5.0@{DIGEST}") == ("v1.5.0", DIGEST) and split_image("v1") == ("v1", "")
    config, secrets = prod(services=services_with("prod", "ledger", blueImage=f"v1.5.0@{DIGEST}"))
    run = run_program("prod", config, secrets)
    assert run.outputs["imageDigests"]["ledger"]["blue"] == DIGEST  # pinned: no registry lookup needed
    image = ledger_values(run, "blue")["image"]
    assert (image["tag"], image["digest"]) == ("v1.5.0", DIGEST)
    deployment = next(
        o
        for o in render(ledger_values(run, "blue"), name="ledger-blue", namespace="ledger-blue")
        if o["kind"] == "Deployment"
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"/ledger@{DIGEST}")
    for bad in ("v1@sha256:abc", "v1@md5:" + "c" * 64):
        with pytest.raises(ConfigError, match=r"cutover:services\.ledger\.blueImage"):
            parsed("prod", services=services_with("prod", "ledger", blueImage=bad))


def test_without_an_image_repository_the_program_creates_an_ecr_repository_and_deploys_from_it() -> None:
    config, secrets = prod(
        services=services_with("prod", "ledger", imageRepository=None), registry={"keepImages": 30}
    )
    run = run_program("prod", config, secrets)
    repo = run.one("aws:ecr/repository:Repository")
    assert repo.parent_type == "cutover:registry:Registry" and repo.protect
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    policy = json.loads(run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs["policy"])
    assert policy["rules"][0]["selection"]["countNumber"] == 30
    url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cutover/prod/ledger"
    assert run.outputs["imageRepositories"]["ledger"] == url
    assert ledger_values(run, "green")["image"]["repository"] == url
    with pytest.raises(
        ConfigError, match=r"cutover:services\.ledger\.imageRepository is set while registry\.create is true"
    ):
        parsed("prod", registry={"create": True})


# --------------------------------------------------------------------------- 10/11: tier, protect, teardown


def test_production_behaviour_follows_the_tier_not_the_stack_name() -> None:
    assert parsed("prod").tier == "production"
    config, secrets = prod(tier="production")
    live = run_program("live", config, secrets)  # a production stack not named prod
    assert all(a.inputs["enableDeletionProtection"] for a in live.of_type("aws:lb/loadBalancer:LoadBalancer"))
    assert live.one("aws:rds/instance:Instance").protect
    settings = parsed(
        "prod",
        tier="non-production",
        database={"name": "ledger", "instanceClass": "db.t4g.medium"},
        network={"cidr": "10.20.0.0/16"},
        protect=None,
    )
    assert not settings.is_production and not settings.protect and not settings.database.multi_az
    assert not settings.network.nat_gateway_per_az and settings.services[0].colors["blue"].replicas == 3
    with pytest.raises(ConfigError, match="cutover:tier must be production or non-production"):
        parsed("prod", tier="prod")


def test_teardown_lifts_every_protection_but_keeps_the_final_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    config, secrets = prod(teardown="true")
    run = run_program("prod", config, secrets)
    db = run.one("aws:rds/instance:Instance")
    assert db.inputs["deletionProtection"] is False and not db.protect
    assert db.inputs["skipFinalSnapshot"] is False and db.inputs["finalSnapshotIdentifier"]
    assert not any(
        a.inputs["enableDeletionProtection"] for a in run.of_type("aws:lb/loadBalancer:LoadBalancer")
    )
    tables = run.of_type("aws:dynamodb/table:Table")
    assert tables and not any(t.protect or t.inputs["deletionProtectionEnabled"] for t in tables)
    assert not any(r.protect for r in run.resources)
    assert any("teardown" in w and "pulumi destroy" in w for w in warnings)
    # without teardown a production stack keeps its protections
    with pytest.raises(
        ConfigError, match=r"cutover:database must have deletionProtection.*cutover:teardown true"
    ):
        parsed(
            "prod",
            database={**json.loads(stack_config("prod")[0]["cutover:database"]), "deletionProtection": False},
        )


# --------------------------------------------------------------------------- 11: ALB-sized subnets


@pytest.mark.parametrize(
    ("cidr", "zones", "fits"),
    [
        ("10.0.0.0/20", ["eu-west-1a", "eu-west-1b"], "10.0.0.0/19"),  # /28 public subnets
        ("10.0.64.0/22", ["eu-west-1a", "eu-west-1b", "eu-west-1c"], "10.0.64.0/19"),
        ("10.0.0.0/12", ["eu-west-1a", "eu-west-1b"], "10.0.0.0/16"),  # larger than a VPC takes
    ],
)
def test_a_network_cidr_without_alb_sized_subnets_is_refused_with_one_that_fits(
    cidr: str, zones: list[str], fits: str
) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"^cutover:network\.cidr .*fix: pulumi config set --path cutover:network\.cidr {fits}$",
    ):
        parsed("staging", network={"cidr": cidr, "availabilityZones": zones})
    assert parsed("staging", network={"cidr": fits, "availabilityZones": zones}).network.cidr == fits


def test_the_smallest_network_that_fits_carves_27_public_subnets() -> None:
    from cutover_infra.components.network import subnet_cidrs

    config = parsed(
        "staging", network={"cidr": "10.0.0.0/19", "availabilityZones": ["eu-west-1a", "eu-west-1b"]}
    )
    _private, public = subnet_cidrs(config.network.cidr, 2)
    assert public == ["10.0.30.0/27", "10.0.30.32/27"]
