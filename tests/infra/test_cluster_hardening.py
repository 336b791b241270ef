"""A created cluster and VPC, hardened, under mocks: Secrets envelope-encrypted with the
cluster's own KMS key, an API endpoint public to listed ranges only (or private), the
control-plane logs in a log group the stack owns (with a retention, before the cluster), and
VPC flow logs. Each is also checked with the policy pack's own rule; the config keys are
refused with the key and the fix when wrong, and for an existing cluster or VPC."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cutover_infra.components.kms import CLUSTER_ROLE_KEY_ACTIONS, key_use_policy
from cutover_infra.components.network import flow_log_delivery_policy, flow_log_trust_policy
from cutover_infra.config import LOG_RETENTION_DAYS, ConfigError, parse, public_access_cidr_problem

from tests.infra.harness import Run, rules, run_program, stack_config, stack_resources
from tests.infra.test_cluster import Graph, parsed, raw_config, run_with_dependencies

EKS = "aws:eks/cluster:Cluster"
KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
CIDR = "203.0.113.0/24"  # the example stacks' documentation range


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_with_dependencies("prod")


@pytest.fixture(scope="module")
def dev() -> Run:
    return run_program("dev")


def with_cluster(stack: str, **changes: object) -> tuple[dict[str, str], list[str]]:
    """The stack's flat config with cutover:cluster keys changed (None removes one)."""
    config, secrets = stack_config(stack)
    cluster = {**json.loads(config["cutover:cluster"]), **changes}
    config["cutover:cluster"] = json.dumps({k: v for k, v in cluster.items() if v is not None})
    return config, secrets


def with_network(stack: str, **changes: object) -> tuple[dict[str, str], list[str]]:
    config, secrets = stack_config(stack)
    network = {**json.loads(config.get("cutover:network", "{}")), **changes}
    config["cutover:network"] = json.dumps(network)
    return config, secrets


def named(run: Run, type_: str, name: str) -> Any:
    (found,) = [r for r in run.of_type(type_) if r.name == name]
    return found


def stack_rule(run: Run, rule: str) -> list[str]:
    """The violations of one of the pack's stack rules on this run (pending or not)."""
    return [v for v in rules.stack_violations(stack_resources(run)) if v.startswith(f"{rule}:")]


def resource_rule(run: Run, type_: str, rule: str) -> list[str]:
    return [
        v for r in run.of_type(type_) for v in rules.violations(type_, r.inputs) if v.startswith(f"{rule}:")
    ]


# --------------------------------------------------------------------------- a) KMS


def test_secrets_are_envelope_encrypted_with_the_clusters_own_rotated_key(prod: Graph) -> None:
    run = prod.run
    key = run.one(KEY)
    assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30
    assert (
        key.inputs["keyUsage"] == "ENCRYPT_DECRYPT"
        and key.inputs["customerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    )
    assert "policy" not in key.inputs  # KMS's default policy: the account administers it through IAM
    key_arn = "arn:aws:kms:eu-west-1:123456789012:key/mock-prod-cluster-secrets-key"
    assert run.one(EKS).inputs["encryptionConfig"] == {
        "resources": ["secrets"],
        "provider": {"keyArn": key_arn},
    }
    alias = run.one("aws:kms/alias:Alias")
    assert alias.inputs["name"] == "alias/cutover-prod-eks-secrets"
    assert alias.inputs["targetKeyId"] == "mock-prod-cluster-secrets-key"
    assert resource_rule(run, EKS, "eks-secrets-encrypted") == []


def test_the_cluster_role_may_use_that_key_before_the_cluster_exists(prod: Graph) -> None:
    use = prod.named("prod-cluster-secrets-key-use")
    assert use.type == "aws:iam/rolePolicy:RolePolicy"
    assert use.inputs["role"] == "prod-cluster-cluster-role"  # the cluster role's name (mock)
    (statement,) = json.loads(use.inputs["policy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == "arn:aws:kms:eu-west-1:123456789012:key/mock-prod-cluster-secrets-key"
    assert set(statement["Action"]) == {"kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"}
    assert "prod-cluster-secrets-key-use" in prod.depends_on["prod-cluster-eks"]


def test_the_key_use_policy_names_one_key_and_grants_no_administration() -> None:
    (statement,) = json.loads(key_use_policy("arn:aws:kms:eu-west-1:1:key/k"))["Statement"]
    assert statement["Resource"] == "arn:aws:kms:eu-west-1:1:key/k"
    assert statement["Action"] == list(CLUSTER_ROLE_KEY_ACTIONS)
    assert not any(a.endswith("*") or "Delete" in a or "Put" in a for a in statement["Action"])


# --------------------------------------------------------------------------- b) endpoint


def test_the_api_endpoint_is_public_to_the_listed_ranges_only(prod: Graph) -> None:
    vpc = prod.run.one(EKS).inputs["vpcConfig"]
    assert (vpc["endpointPublicAccess"], vpc["endpointPrivateAccess"], vpc["publicAccessCidrs"]) == (
        True,
        True,
        [CIDR],
    )
    assert resource_rule(prod.run, EKS, "eks-public-endpoint-restricted") == []


def test_a_private_only_endpoint_is_a_choice_the_stack_can_make() -> None:
    run = run_program("staging", *with_cluster("staging", publicAccessCidrs=None, endpointPublicAccess=False))
    vpc = run.one(EKS).inputs["vpcConfig"]
    assert (vpc["endpointPublicAccess"], vpc["endpointPrivateAccess"]) == (False, True)
    assert "publicAccessCidrs" not in vpc
    assert resource_rule(run, EKS, "eks-public-endpoint-restricted") == []


BAD_ENDPOINTS = [
    ("no choice at all", {"publicAccessCidrs": None}, "publicAccessCidrs is not set"),
    ("public to nothing listed", {"publicAccessCidrs": [], "endpointPublicAccess": True}, "0.0.0.0/0"),
    ("ranges for a private endpoint", {"endpointPublicAccess": False}, "endpointPublicAccess is false"),
    ("the world", {"publicAccessCidrs": ["0.0.0.0/0"]}, r"publicAccessCidrs\[0\] opens the API endpoint"),
    ("half the world", {"publicAccessCidrs": [CIDR, "0.0.0.0/1"]}, r"publicAccessCidrs\[1\] opens"),
    ("the IPv6 world", {"publicAccessCidrs": ["::/0"]}, r"publicAccessCidrs\[0\] is IPv6"),
    ("IPv6 on an IPv4 cluster", {"publicAccessCidrs": ["2001:db8::/32"]}, "is IPv6"),
    (
        "host bits",
        {"publicAccessCidrs": ["203.0.113.7/24"]},
        r"the network is 203\.0\.113\.0/24.*fix: .*203\.0\.113\.0/24",
    ),
    ("an address", {"publicAccessCidrs": ["203.0.113.7"]}, "must be an IPv4 CIDR"),
    ("not a CIDR", {"publicAccessCidrs": ["office"]}, "must be an IPv4 CIDR"),
    ("not a list", {"publicAccessCidrs": CIDR}, "must be a list of CIDRs"),
    ("twice", {"publicAccessCidrs": [CIDR, CIDR]}, r"publicAccessCidrs\[1\] repeats"),
    ("over the EKS quota", {"publicAccessCidrs": [f"198.51.{i}.0/24" for i in range(41)]}, "at most 40"),
    ("not a bool", {"endpointPublicAccess": "yes"}, "endpointPublicAccess must be true or false"),
]


@pytest.mark.parametrize(("what", "cluster", "problem"), BAD_ENDPOINTS, ids=[b[0] for b in BAD_ENDPOINTS])
def test_a_bad_endpoint_config_names_the_key_and_the_fix(
    what: str, cluster: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=r"^cutover:cluster\.") as error:
        parsed("prod", **cluster)
    message = str(error.value)
    assert "; fix: " in message and "\n" not in message, message
    assert re.search(problem, message), message


def test_an_unchosen_endpoint_fails_before_anything_is_declared() -> None:
    run = Run()
    with pytest.raises(
        Exception, match=r"cutover:cluster.publicAccessCidrs is not set.*endpointPublicAccess false"
    ):
        run_program("prod", *with_cluster("prod", publicAccessCidrs=None), run=run)
    assert run.registered == []


@pytest.mark.parametrize(
    ("cidr", "problem"),
    [
        (CIDR, None),
        ("198.51.100.0/22", None),
        ("192.0.2.1/32", None),
        ("10.0.0.0/7", "opens"),
        ("::/0", "IPv6"),
    ],
)
def test_public_access_cidr_problem(cidr: str, problem: str | None) -> None:
    found = public_access_cidr_problem(cidr)
    assert (found is None) if problem is None else (found is not None and problem in found[0])


# --------------------------------------------------------------------------- c) control-plane logs


def test_the_control_plane_logs_go_to_a_log_group_the_stack_owns_with_a_retention(prod: Graph) -> None:
    run = prod.run
    group = named(run, LOG_GROUP, "prod-cluster-control-plane-logs")
    assert group.inputs["name"] == "/aws/eks/cutover-prod-eks/cluster"
    assert group.inputs["retentionInDays"] == 365  # Pulumi.prod.yaml
    assert set(run.one(EKS).inputs["enabledClusterLogTypes"]) >= {"api", "audit", "authenticator"}
    assert (
        "prod-cluster-control-plane-logs" in prod.depends_on["prod-cluster-eks"]
    )  # before EKS makes its own
    assert stack_rule(run, "eks-control-plane-logs-retained") == []


def test_the_retention_defaults_to_90_days() -> None:
    assert parsed("prod", logRetentionDays=None).log_retention_days == 90
    assert parsed("prod", logRetentionDays=3653).log_retention_days == 3653


@pytest.mark.parametrize(("days", "fix"), [(100, "120"), (0, "1"), (5000, "90"), (True, "90"), ("90", "90")])
def test_a_retention_cloudwatch_does_not_offer_is_refused(days: object, fix: str) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"^cutover:cluster\.logRetentionDays must be a CloudWatch Logs retention period.*"
        rf"fix: pulumi config set --path cutover:cluster\.logRetentionDays {fix}$",
    ):
        parsed("prod", logRetentionDays=days)


def test_the_allowed_retentions_are_cloudwatchs() -> None:
    assert LOG_RETENTION_DAYS[:8] == (1, 3, 5, 7, 14, 30, 60, 90) and LOG_RETENTION_DAYS[-1] == 3653
    assert len(LOG_RETENTION_DAYS) == 22


# --------------------------------------------------------------------------- d) VPC flow logs


def test_the_vpc_logs_every_flow_to_a_log_group_with_a_retention(prod: Graph) -> None:
    run = prod.run
    (vpc,) = run.of_type("aws:ec2/vpc:Vpc")
    flow = run.one(FLOW_LOG)
    group = named(run, LOG_GROUP, "prod-network-flow-logs")
    assert flow.inputs["vpcId"] == f"{vpc.name}-id"
    assert flow.inputs["trafficType"] == "ALL" and flow.inputs["maxAggregationInterval"] == 60
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    assert (
        flow.inputs["logDestination"]
        == "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/vpc/prod-network/flow-logs"
    )
    assert group.inputs["name"] == "/aws/vpc/prod-network/flow-logs" and group.inputs["retentionInDays"] == 90
    assert flow.inputs["iamRoleArn"] == "arn:aws:mock:eu-west-1:123456789012:prod-network-flow-logs"
    assert prod.depends_on["prod-network-flow-logs"] >= {"prod-network-flow-logs"}  # its role policy
    assert stack_rule(run, "vpc-flow-logs") == []


def test_only_vpc_flow_logs_of_this_account_may_use_the_delivery_role(prod: Graph) -> None:
    (role,) = [r for r in prod.run.of_type("aws:iam/role:Role") if r.name == "prod-network-flow-logs"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:ec2:eu-west-1:123456789012:vpc-flow-log/*"},
    }
    policy = named(prod.run, "aws:iam/rolePolicy:RolePolicy", "prod-network-flow-logs")
    write, describe = json.loads(policy.inputs["policy"])["Statement"]
    group = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/vpc/prod-network/flow-logs"
    assert write["Resource"] == [group, f"{group}:*"]
    assert set(write["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}
    assert describe["Action"] == "logs:DescribeLogGroups"  # a list call, not scoped to one group


def test_the_flow_log_policies_follow_the_log_groups_partition_and_account() -> None:
    arn = "arn:aws-cn:logs:cn-north-1:210987654321:log-group:/x:*"
    (trust,) = json.loads(flow_log_trust_policy(arn))["Statement"]
    assert (
        trust["Condition"]["ArnLike"]["aws:SourceArn"]
        == "arn:aws-cn:ec2:cn-north-1:210987654321:vpc-flow-log/*"
    )
    write, _ = json.loads(flow_log_delivery_policy(arn))["Statement"]
    assert write["Resource"] == [
        "arn:aws-cn:logs:cn-north-1:210987654321:log-group:/x",
        "arn:aws-cn:logs:cn-north-1:210987654321:log-group:/x:*",
    ]


def test_the_flow_log_retention_is_a_config_key() -> None:
    run = run_program("staging", *with_network("staging", flowLogRetentionDays=30))
    assert named(run, LOG_GROUP, "staging-network-flow-logs").inputs["retentionInDays"] == 30


def test_a_flow_log_retention_cloudwatch_does_not_offer_is_refused() -> None:
    raw = raw_config("staging")
    raw["network"] = {**raw["network"], "flowLogRetentionDays": 45}
    with pytest.raises(
        ConfigError,
        match=r"^cutover:network\.flowLogRetentionDays must be a CloudWatch Logs retention period.*"
        r"fix: pulumi config set --path cutover:network\.flowLogRetentionDays 60$",
    ):
        parse(raw, stack="staging", region="eu-west-1", is_secret=lambda _k: True)
    assert (
        parse(
            raw_config("staging"), stack="staging", region="eu-west-1", is_secret=lambda _k: True
        ).network.flow_log_retention_days
        == 90
    )


# --------------------------------------------------------------------------- existing cluster and VPC


def test_an_existing_cluster_and_vpc_get_none_of_it(dev: Run) -> None:
    assert not dev.of_type(KEY) and not dev.of_type(LOG_GROUP) and not dev.of_type(FLOW_LOG)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("cluster", "publicAccessCidrs", [CIDR]),
        ("cluster", "endpointPublicAccess", False),
        ("cluster", "logRetentionDays", 90),
        ("network", "flowLogRetentionDays", 90),
    ],
)
def test_those_keys_are_refused_for_an_existing_cluster(section: str, key: str, value: object) -> None:
    config, secrets = with_cluster("dev") if section == "cluster" else with_network("dev")
    current = json.loads(config.get(f"cutover:{section}", "{}"))
    config[f"cutover:{section}"] = json.dumps({**current, key: value})
    run = Run()
    with pytest.raises(
        Exception,
        match=rf"cutover:{section}\.{key} applies only to a .* this stack creates.*; fix: pulumi config rm",
    ):
        run_program("dev", config, secrets, run=run)
    assert run.registered == []
