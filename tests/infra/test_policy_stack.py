"""The policy pack's stack rules (promises that span resources), each through its
StackValidationPolicy's own validate function on a compliant and a violating stack, with
resources shaped as pulumi_policy hands them over (PolicyResource, unknown-checking props,
property dependencies); and PENDING_IN_PROGRAM, the rules the program does not meet yet."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
)
from pulumi_policy.proxy import (
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
    unknown_checking_proxy,
)

from tests.infra.harness import ROOT, Run, run_program, stack_config, stack_resources
from tests.infra.harness import rules as rules

CLUSTER = "aws:eks/cluster:Cluster"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
ALB = "aws:lb/loadBalancer:LoadBalancer"
RELEASE = "kubernetes:helm.sh/v3:Release"


@dataclass
class R:
    """A stack resource to hand to the policy: type, name, props, property -> names it came from."""

    type: str
    name: str
    props: dict[str, Any]
    deps: dict[str, list[str]] = field(default_factory=dict)


def urn(name: str) -> str:
    return f"urn:pulumi:prod::cutover::t${name}"


def policy_resources(resources: list[R]) -> list[PolicyResource]:
    """What pulumi_policy's AnalyzeStack builds: props behind its unknown-checking proxy,
    property_dependencies resolved to the PolicyResource objects."""
    built = {
        r.name: PolicyResource(
            r.type,
            unknown_checking_proxy(r.props),
            urn(r.name),
            r.name,
            PolicyResourceOptions(False, [], False, [], PolicyCustomTimeouts(0, 0, 0), []),
            None,
            None,
            [],
            {},
        )
        for r in resources
    }
    for r in resources:
        built[r.name].property_dependencies = {k: [built[d] for d in v] for k, v in r.deps.items()}
    return list(built.values())


def validate(name: str, resources: list[R]) -> list[tuple[str, str | None]]:
    (policy,) = [p for p in rules.policies() if p.name == name]
    reported: list[tuple[str, str | None]] = []
    policy.validate(
        StackValidationArgs(policy_resources(resources)),
        lambda message, where=None: reported.append((message, where)),
    )
    return reported


EKS = R(CLUSTER, "eks", {"name": "prod", "enabledClusterLogTypes": ["api", "audit", "authenticator"]})
EKS_LOGS = R(LOG_GROUP, "eks-logs", {"name": "/aws/eks/prod/cluster", "retentionInDays": 90})
THE_VPC = R(VPC, "vpc", {"cidrBlock": "10.0.0.0/16"})
FLOW = R(FLOW_LOG, "flow", {"vpcId": "vpc-123", "trafficType": "ALL"}, {"vpcId": ["vpc"]})
APP_ALB = R(ALB, "alb", {"loadBalancerType": "application", "idleTimeout": 60})
APP = R(RELEASE, "app", {"chart": "ledger", "values": {"http": {"keepAliveSeconds": 75}}})

STACK_CASES: dict[str, tuple[list[R], list[R]]] = {
    "eks-control-plane-logs-retained": (
        [EKS, EKS_LOGS],
        [EKS, R(LOG_GROUP, "eks-logs", {"name": "/aws/eks/prod/cluster"})],  # never expires
    ),
    "vpc-flow-logs": ([THE_VPC, FLOW], [THE_VPC]),
    "keep-alive-outlives-alb-idle-timeout": (
        [APP_ALB, APP],
        [APP_ALB, R(RELEASE, "app", {"values": {"http": {"keepAliveSeconds": 60}}})],  # equal is too short
    ),
}


def test_every_stack_rule_has_a_case_and_a_policy() -> None:
    assert {rule.name for rule in rules.STACK_RULES} == set(STACK_CASES)
    names = [p.name for p in rules.policies()]
    assert len(names) == len(set(names)) == len(rules.RULES) + len(rules.STACK_RULES)


@pytest.mark.parametrize("name", sorted(STACK_CASES))
def test_stack_rule_passes_the_compliant_stack_and_reports_the_violating_one(name: str) -> None:
    compliant, violating = STACK_CASES[name]
    assert validate(name, compliant) == []
    reported = validate(name, violating)
    assert reported and all(where and where.startswith("urn:pulumi:") for _, where in reported)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([EKS], ["no log group /aws/eks/prod/cluster in the stack"]),
        (
            [EKS, R(LOG_GROUP, "other", {"name": "/aws/eks/staging/cluster", "retentionInDays": 30})],
            ["no log group"],
        ),
        (
            [EKS, R(LOG_GROUP, "eks-logs", {"name": "/aws/eks/prod/cluster", "retentionInDays": 0})],
            ["never expire"],
        ),
        (
            [R(CLUSTER, "eks", {"name": "prod", "enabledClusterLogTypes": ["api"]}), EKS_LOGS],
            ["audit, authenticator"],
        ),
        ([R(CLUSTER, "eks", {"name": "prod"}), EKS_LOGS], ["api, audit, authenticator"]),
    ],
)
def test_control_plane_logs(resources: list[R], expected: list[str]) -> None:
    reported = validate("eks-control-plane-logs-retained", resources)
    assert len(reported) == len(expected)
    assert all(text in message for (message, _), text in zip(reported, expected, strict=True))


def test_a_log_group_named_from_the_cluster_output_matches_by_dependency_in_a_preview() -> None:
    unknown_name = R(
        LOG_GROUP, "eks-logs", {"name": UNKNOWN_STRING_VALUE, "retentionInDays": 30}, {"name": ["eks"]}
    )
    assert validate("eks-control-plane-logs-retained", [EKS, unknown_name]) == []


def test_flow_logs_match_their_vpc_by_dependency_even_while_the_vpc_id_is_unknown() -> None:
    # In a preview of a new stack, the VPC's ID is unknown; the flow log's vpcId too.
    unknown = R(FLOW_LOG, "flow", {"vpcId": UNKNOWN_STRING_VALUE}, {"vpcId": ["vpc"]})
    assert validate("vpc-flow-logs", [THE_VPC, unknown]) == []
    other_vpc = R(VPC, "vpc2", {"cidrBlock": "10.1.0.0/16"})
    reported = validate("vpc-flow-logs", [THE_VPC, other_vpc, FLOW])
    assert [where for _, where in reported] == [urn("vpc2")]


def test_a_flow_log_matches_by_value_when_the_ids_are_known() -> None:
    known = R(VPC, "vpc", {"id": "vpc-123"})
    assert (
        rules.stack_violations(
            [
                rules.StackResource(VPC, "vpc", known.props),
                rules.StackResource(FLOW_LOG, "flow", {"vpcId": "vpc-123"}),
            ]
        )
        == []
    )


def test_an_unknown_value_the_rule_needs_is_left_to_pulumi_policy_not_guessed() -> None:
    # Values computed from other outputs are unknown in a preview of a new stack: the rule
    # must neither pass nor fail on a guess. pulumi_policy turns the UnknownValueError into
    # "can't run policy ... during preview"; `pulumi up` runs it again with the values known.
    unknown = R(RELEASE, "app", {"values": {"http": {"keepAliveSeconds": UNKNOWN_NUMBER_VALUE}}})
    with pytest.raises(UnknownValueError):
        validate("keep-alive-outlives-alb-idle-timeout", [APP_ALB, unknown])


@pytest.mark.parametrize(
    ("albs", "values", "reported"),
    [
        ([R(ALB, "alb", {})], {"http": {"keepAliveSeconds": 61}}, 0),  # ALB default 60 s
        ([R(ALB, "alb", {})], {"http": {"keepAliveSeconds": 60}}, 1),
        (
            [R(ALB, "a", {"idleTimeout": 60}), R(ALB, "b", {"idleTimeout": 120})],
            {"http": {"keepAliveSeconds": 75}},
            1,
        ),
        ([R(ALB, "alb", {"idleTimeout": 60})], {"http": {"keepAliveSeconds": "5"}}, 1),  # uvicorn's default
        ([R(ALB, "alb", {"idleTimeout": 60})], {"http": {"keepAliveSeconds": "soon"}}, 1),
        ([R(ALB, "alb", {"idleTimeout": 60})], {"image": {"tag": "v1"}}, 0),  # not the app's release
        (
            [R(ALB, "nlb", {"loadBalancerType": "network", "idleTimeout": 350})],
            {"http": {"keepAliveSeconds": 75}},
            0,
        ),
    ],
)
def test_keep_alive_is_compared_with_every_alb(albs: list[R], values: dict[str, Any], reported: int) -> None:
    release = R(RELEASE, "app", {"values": values})
    found = validate("keep-alive-outlives-alb-idle-timeout", [*albs, release])
    assert len(found) == reported
    assert all(where == urn("app") for _, where in found)


# PENDING_IN_PROGRAM: what the harness skips on the example stacks, and why it may not grow.


def full_violations(stack: str) -> set[str]:
    """Every rule any resource of the example stack breaks, pending or not."""
    return broken_rules(run_program(stack))


def broken_rules(run: Run) -> set[str]:
    """Every rule of the pack (none skipped) that a resource of the run breaks."""
    broken = {v.split(":")[0] for r in run.resources for v in rules.violations(r.type, r.inputs)}
    return broken | {v.split(":")[0] for v in rules.stack_violations(stack_resources(run))}


# Production checks follow the stack's tier (cutover:tier), not its name; a teardown
# (cutover:teardown) is exempt, and shows in every tagged resource.


def prod_config(**changes: str) -> tuple[dict[str, str], list[str]]:
    flat, secrets = stack_config("prod")
    return {**flat, **{f"cutover:{k}": v for k, v in changes.items()}}, secrets


def tagged(run: Run) -> list[Any]:
    return [r for r in run.resources if r.type.startswith("aws:") and r.inputs.get("tags")]


def test_every_example_stack_passes_the_whole_pack_with_nothing_skipped() -> None:
    for stack in ("dev", "staging", "prod"):
        assert full_violations(stack) == set(), stack


def test_a_production_tier_stack_not_named_prod_is_checked() -> None:
    # A production stack named `live` whose ALBs lost their deletion protection (protect false).
    run = run_program("live", *prod_config(protect="false"))
    assert {r.inputs["tags"]["tier"] for r in tagged(run)} == {"production"}
    assert [v.split(": ", 1)[1] for v in run.violations] == [
        "alb-hardened: prod ALB has no deletion protection"
    ] * 2
    assert all(v.startswith("aws:lb/loadBalancer:LoadBalancer live-") for v in run.violations)


def test_the_prod_teardown_passes_the_pack_and_shows_in_every_tag() -> None:
    torn = run_program("prod", *prod_config(teardown="true"))
    db = torn.one("aws:rds/instance:Instance")
    assert db.inputs["deletionProtection"] is False  # what rds-prod-protected would refuse
    assert broken_rules(torn) == set()
    assert all(r.inputs["tags"]["teardown"] == "true" for r in tagged(torn))
    assert all(r.inputs["tags"]["tier"] == "production" for r in tagged(torn))
    # Without teardown (the next `up` after an aborted teardown): the tag is gone, checks are back.
    kept = run_program("prod", *prod_config())
    assert kept.resources and not any("teardown" in r.inputs["tags"] for r in tagged(kept))
    unprotected = {**db.inputs, "tags": {k: v for k, v in db.inputs["tags"].items() if k != "teardown"}}
    assert rules.violations(db.type, unprotected) == [
        "rds-prod-protected: prod RDS has no deletion protection"
    ]


def test_non_production_stacks_are_tagged_so() -> None:
    staging = run_program("staging")
    assert {r.inputs["tags"]["tier"] for r in tagged(staging)} == {"non-production"}


def test_pending_rules_are_real_rules_that_the_program_still_breaks() -> None:
    names = {rule.name for rule in rules.RULES} | {rule.name for rule in rules.STACK_RULES}
    assert names >= rules.PENDING_IN_PROGRAM
    broken = set().union(*(full_violations(stack) for stack in ("dev", "staging", "prod")))
    compliant = rules.PENDING_IN_PROGRAM - broken
    assert not compliant, f"the program complies now: remove {sorted(compliant)} from PENDING_IN_PROGRAM"


def test_the_harness_skips_only_the_pending_rules() -> None:
    run = [rules.StackResource(VPC, "vpc", {}), rules.StackResource(ALB, "a", {"idleTimeout": 90})]
    release = rules.StackResource(RELEASE, "app", {"values": {"http": {"keepAliveSeconds": 75}}})
    found = rules.stack_violations([*run, release], skip=frozenset({"vpc-flow-logs"}))
    assert [v.split(":")[0] for v in found] == ["keep-alive-outlives-alb-idle-timeout"]
    assert any(v.startswith("vpc-flow-logs") for v in rules.stack_violations([*run, release]))


def test_the_pack_is_mandatory_and_its_requirements_match_the_project() -> None:
    pack = ROOT / "infra" / "policy"
    assert "EnforcementLevel.MANDATORY" in (pack / "__main__.py").read_text()
    required = _requirements((pack / "requirements.txt").read_text().splitlines())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "deploy"
    ]
    assert required == {k: v for k, v in _requirements(project).items() if k in required}
    assert set(required) == {"pulumi", "pulumi-policy"}


def _requirements(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*([<>=!~].*)?$", line.split("#")[0])
        if match:
            found[match.group(1).lower()] = (match.group(2) or "").strip()
    return found


# The whole pack through pulumi_policy's own analyzer (what the CLI talks to over gRPC).


def analyzer() -> Any:
    from pulumi_policy import EnforcementLevel
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    none = None
    return _PolicyAnalyzerServicer(
        "cutover",
        "0.0.1",
        rules.policies(),
        EnforcementLevel.MANDATORY,
        none,
        none,
        none,
        none,
        none,
        none,
        none,
    )


def analyzer_resource(
    type_: str, name: str, props: dict[str, Any], deps: dict[str, list[str]] | None = None
) -> Any:
    from google.protobuf import struct_pb2  # type: ignore[import-untyped]
    from pulumi.runtime.proto import analyzer_pb2

    properties = struct_pb2.Struct()
    properties.update(props)
    resource = analyzer_pb2.AnalyzerResource(type=type_, urn=urn(name), name=name, properties=properties)
    for prop, on in (deps or {}).items():
        resource.propertyDependencies[prop].urns.extend(urn(d) for d in on)
    return resource


def test_the_analyzer_enforces_stack_rules_as_mandatory_and_matches_unknown_ids_by_dependency() -> None:
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_resource(VPC, "vpc", {"cidrBlock": "10.0.0.0/16"}),
            analyzer_resource(FLOW_LOG, "flow", {"vpcId": UNKNOWN_STRING_VALUE}, {"vpcId": ["vpc"]}),
            analyzer_resource(VPC, "vpc2", {"cidrBlock": "10.1.0.0/16"}),
        ]
    )
    found = analyzer().AnalyzeStack(request, None).diagnostics
    assert [(d.policyName, d.urn) for d in found] == [("vpc-flow-logs", urn("vpc2"))]
    assert found[0].enforcementLevel == analyzer_pb2.MANDATORY


@pytest.mark.parametrize(
    ("ssl_policy", "reported"),
    [("ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09", False), ("ELBSecurityPolicy-2016-08", True)],
)
def test_the_analyzer_checks_each_resource(ssl_policy: str, reported: bool) -> None:
    from pulumi.runtime.proto import analyzer_pb2

    listener = analyzer_resource(
        "aws:lb/listener:Listener", "https", {"protocol": "HTTPS", "sslPolicy": ssl_policy}
    )
    request = analyzer_pb2.AnalyzeRequest(
        type=listener.type, properties=listener.properties, urn=listener.urn, name=listener.name
    )
    found = analyzer().Analyze(request, None).diagnostics
    assert [d.policyName for d in found] == (["alb-modern-tls"] if reported else [])
