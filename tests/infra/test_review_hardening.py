"""Holes a hostile review of issue 12's infra found, each pinned by the test that showed it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pulumi
import pytest
from cutover_infra.values import is_missing_item_error, unreadable_lock_table

from tests.infra.harness import RecordingMocks, Run, run_program

DENIED = (
    "reading DynamoDB Table Item (cutover-prod-locks): operation error DynamoDB: GetItem, "
    "AccessDeniedException: User is not authorized to perform: dynamodb:GetItem"
)


class DeniedLockTable(RecordingMocks):
    """An account whose lock table exists but refuses the read (IAM, SCP, throttling)."""

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:dynamodb/getTableItem:getTableItem":
            self.run.calls.append(args.token)
            return {}, [("item", DENIED)]
        return super().call(args)


# --------------------------------------------------------------------------- unreadable lock table


def test_an_up_that_cannot_read_the_lock_table_stops_before_declaring_anything() -> None:
    """Before: the lock check warned and went on, and the release state read fell back to the
    committed tags, so an `up` whose role lost dynamodb:GetItem redeployed old images over a
    release, under a held lock."""
    refused = Run()
    with pytest.raises(
        Exception, match=r"could not read cutover's .* cutover-prod-locks .*fix: allow dynamodb:GetItem"
    ):
        run_program("prod", run=refused, mocks=DeniedLockTable)
    assert refused.registered == []


def test_a_preview_that_cannot_read_the_lock_table_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: True)
    run = run_program("prod", mocks=DeniedLockTable)
    assert run.registered and "aws:dynamodb/getTableItem:getTableItem" in run.calls


@pytest.mark.parametrize(
    ("message", "missing"),
    [
        ("reading DynamoDB Table Item (cutover-prod-locks|prod): empty result", True),
        ("reading DynamoDB Table Item (cutover-prod-locks|prod): couldn't find resource", True),
        ("ResourceNotFoundException: Requested resource not found", True),
        (DENIED, False),
        ("ThrottlingException: Rate exceeded", False),
    ],
)
def test_only_a_missing_item_or_table_counts_as_nothing_to_read(message: str, missing: bool) -> None:
    assert is_missing_item_error(message) is missing


def test_the_unreadable_lock_table_message_names_the_table_and_the_fix() -> None:
    message = unreadable_lock_table("cutover's release lock", "cutover-prod-locks", "AccessDenied")
    assert "cutover-prod-locks" in message and "fix: allow dynamodb:GetItem" in message


# --------------------------------------------------------------------------- access entries


def test_moving_a_role_between_access_levels_keeps_its_access_entry() -> None:
    """EKS takes one access entry per principal: a renamed entry is created before the old
    one is deleted, and EKS refuses it. Before, the level was part of the name."""
    from cutover_infra.components.access import grants
    from cutover_infra.config import ClusterAccess

    role = "arn:aws:iam::123456789012:role/ci-release"
    (as_admin,) = grants(ClusterAccess(admins=(role,)))
    (as_release,) = grants(ClusterAccess(release=(role,)))
    (as_preview,) = grants(ClusterAccess(preview=(role,)))
    assert as_admin.key == as_release.key == as_preview.key
    # Same policy, same association (nothing to do); another policy, another association.
    assert as_admin.association_key == as_release.association_key != as_preview.association_key


def test_roles_whose_names_read_alike_get_distinct_resources() -> None:
    """Before: `ci.release` and `ci_release` both became `...-ci-release`, a duplicate URN."""
    from cutover_infra.components.access import grants
    from cutover_infra.config import ClusterAccess

    found = grants(
        ClusterAccess(
            admins=("arn:aws:iam::123456789012:role/ci.release",),
            release=("arn:aws:iam::123456789012:role/ci_release",),
        )
    )
    assert len({g.key for g in found}) == 2
    assert len({g.association_key for g in found}) == 2


# --------------------------------------------------------------------------- the policy pack


def _reported(policy_name: str, resource_type: str, props: dict[str, Any]) -> list[str]:
    from tests.infra.harness import rules

    (policy,) = [p for p in rules.policies() if p.name == policy_name]
    reported: list[str] = []
    args = SimpleNamespace(resource_type=resource_type, props=props, urn="urn:test", name="test")
    policy.validate(args, lambda message, _urn=None: reported.append(message))
    return reported


@pytest.mark.parametrize(
    ("policy", "alias", "props"),
    [
        ("alb-hardened", "aws:alb/loadBalancer:LoadBalancer", {"dropInvalidHeaderFields": False}),
        ("alb-access-logs", "aws:alb/loadBalancer:LoadBalancer", {"dropInvalidHeaderFields": True}),
        (
            "alb-modern-tls",
            "aws:alb/listener:Listener",
            {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-2016-08"},
        ),
        ("target-group-sticky-and-ready", "aws:alb/targetGroup:TargetGroup", {"targetType": "instance"}),
    ],
)
def test_the_aws_alb_module_does_not_skip_the_load_balancer_rules(
    policy: str, alias: str, props: dict[str, Any]
) -> None:
    """pulumi-aws has every load balancer type twice (aws.lb and aws.alb); before, the rules
    matched aws:lb/... only, so aws.alb.LoadBalancer(...) passed with no access logs."""
    assert _reported(policy, alias, props) != []


def test_the_stack_rules_see_an_aws_alb_load_balancer() -> None:
    from tests.infra.harness import rules

    alb = rules.StackResource("aws:alb/loadBalancer:LoadBalancer", "urn:alb", {"idleTimeout": 120})
    release = rules.StackResource(
        "kubernetes:helm.sh/v3:Release", "urn:release", {"values": {"http": {"keepAliveSeconds": 75}}}
    )
    assert rules.stack_violations([alb, release]) != []


SPLIT_WORLD = ["0.0.0.0/1", "128.0.0.0/1"]


def test_an_eks_endpoint_open_to_the_world_in_two_halves_is_reported() -> None:
    vpc = {"endpointPrivateAccess": True, "endpointPublicAccess": True, "publicAccessCidrs": SPLIT_WORLD}
    assert _reported("eks-public-endpoint-restricted", "aws:eks/cluster:Cluster", {"vpcConfig": vpc})
    narrow = {**vpc, "publicAccessCidrs": ["203.0.113.0/24", "10.0.0.0/8"]}
    assert not _reported("eks-public-endpoint-restricted", "aws:eks/cluster:Cluster", {"vpcConfig": narrow})


@pytest.mark.parametrize(
    ("policy", "resource_type", "props"),
    [
        (
            "no-world-ingress",
            "aws:ec2/securityGroup:SecurityGroup",
            {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": SPLIT_WORLD}]},
        ),
        (
            "no-world-ingress-rule",
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/1"]},
        ),
        (
            "no-world-ingress-vpc-rule",
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            {"ipProtocol": "-1", "cidrIpv6": "::/1"},
        ),
    ],
)
def test_security_groups_open_to_half_the_internet_are_reported(
    policy: str, resource_type: str, props: dict[str, Any]
) -> None:
    assert _reported(policy, resource_type, props) != []


def test_the_rules_never_crash_on_absent_or_unknown_properties() -> None:
    """A preview sends unknowns (pulumi_policy raises UnknownValueError, which it reports as
    advisory) and omits unset properties: any other exception would break the pack."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

    from tests.infra.harness import rules
    from tests.infra.test_policy import CASES

    crashed = []
    for name, (compliant, violating) in CASES.items():
        (rule,) = [r for r in rules.RULES if r.name == name]
        for base in (compliant, violating, {}):
            variants = [base] + [{**base, k: UNKNOWN_STRING_VALUE} for k in base]
            variants += [{k: v for k, v in base.items() if k != key} for key in base]
            variants += [{**base, k: None} for k in base]
            for props in variants:
                try:
                    _reported(name, rule.resource_type, unknown_checking_proxy(props))
                except UnknownValueError:
                    pass
                except Exception as exc:
                    crashed.append(f"{name} {props}: {exc!r}")
    assert crashed == []


# --------------------------------------------------------------------------- live traffic


def test_a_record_with_a_color_set_identifier_but_no_weight_stops_the_up_with_its_name() -> None:
    """Before: int(None), a TypeError that names nothing."""
    from cutover_infra.values import live_traffic

    failover = [{"name": "ledger.example.com.", "type": "A", "setIdentifier": "blue", "weight": None}]
    with pytest.raises(ValueError, match=r"ledger\.example\.com with set identifier blue .*fix:"):
        live_traffic(failover, "ledger.example.com", {"blue": 100, "green": 0})


def test_live_traffic_reads_route53s_spelling_and_ignores_other_records() -> None:
    from cutover_infra.values import LiveTraffic, live_traffic

    records: list[dict[str, Any]] = [
        {"name": "LEDGER.example.com.", "type": "A", "setIdentifier": "green", "weight": 100},
        {"name": "ledger.example.com.", "type": "A", "setIdentifier": "blue", "weight": 0},
        {"name": "ledger.example.com.", "type": "A", "setIdentifier": "canary", "weight": 5},
        {"name": "xledger.example.com.", "type": "A", "setIdentifier": "blue", "weight": 50},
        {"name": "ledger.example.com.", "type": "AAAA", "setIdentifier": "blue", "weight": 50},
        {
            "name": "_cutover.ledger.example.com.",
            "type": "TXT",
            "resourceRecords": [{"value": '"cutover-generation=7"'}],
        },
    ]
    assert live_traffic(records, "ledger.example.com", {"blue": 100, "green": 0}) == LiveTraffic(
        {"blue": 0, "green": 100}, 7, live=True
    )


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("cidr", ["10.10.0.0", "10.10.0.0/33", "10.10.0.1/16", "vpc-cidr", "fd00::/8"])
def test_an_existing_clusters_vpc_cidr_must_be_an_ipv4_block(cidr: str) -> None:
    """Before: any string, handed on to the chart's trusted proxies and Postgres egress rule
    (the database CIDR defaults to it), where Helm or the NetworkPolicy failed much later."""
    from cutover_infra.config import ConfigError

    from tests.infra.harness import parsed

    dev = parsed("dev")
    cluster = {
        "create": False,
        "name": dev.cluster.existing.name,
        "oidcProviderArn": dev.cluster.existing.oidc_provider_arn,
        "oidcIssuerUrl": dev.cluster.existing.oidc_issuer_url,
        "vpcId": dev.cluster.existing.vpc_id,
        "publicSubnetIds": list(dev.cluster.existing.public_subnet_ids),
        "privateSubnetIds": list(dev.cluster.existing.private_subnet_ids),
        "nodeSecurityGroupId": dev.cluster.existing.node_security_group_id,
        "vpcCidr": cidr,
    }
    with pytest.raises(ConfigError, match=r"^cutover:cluster\.vpcCidr .*; fix: pulumi config set"):
        parsed("dev", cluster=cluster)
