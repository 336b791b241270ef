"""Each policy rule, through the policy's own validate function: one compliant resource,
one violating resource."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.infra.harness import rules

RDS = {
    "publiclyAccessible": False,
    "storageEncrypted": True,
    "backupRetentionPeriod": 14,
    "skipFinalSnapshot": False,
    "deletionProtection": True,
    "multiAz": True,
    "manageMasterUserPassword": True,
    "tags": {"environment": "prod"},
}
GOOD_TG = {
    "targetType": "ip",
    "healthCheck": {"path": "/health/ready"},
    "stickiness": {"enabled": True, "type": "lb_cookie"},
}
WEB = {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}
ALIAS = [{"name": "x", "zoneId": "Z", "evaluateTargetHealth": True}]
VPC_RULE = {
    "securityGroupId": "sg-1",
    "ipProtocol": "tcp",
    "fromPort": 443,
    "toPort": 443,
    "cidrIpv4": "0.0.0.0/0",
}
ALB = {"dropInvalidHeaderFields": True, "accessLogs": {"enabled": True, "bucket": "cutover-alb-logs"}}
EKS_VPC = {"subnetIds": ["subnet-1"], "endpointPrivateAccess": True, "endpointPublicAccess": True}
EKS = {
    "name": "prod",
    "vpcConfig": {**EKS_VPC, "publicAccessCidrs": ["203.0.113.0/24"]},
    "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:eu-west-1:1:key/k"}},
}
# The TLS 1.3 post-quantum policies AWS published in 2025-09 (describe-ssl-policies docs).
PQ_POLICIES = (
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",  # AWS's recommended policy, the console default
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09",
)

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "rds-not-public": (RDS, {**RDS, "publiclyAccessible": True}),
    "rds-encrypted": (RDS, {**RDS, "storageEncrypted": False}),
    "rds-backups": (RDS, {**RDS, "backupRetentionPeriod": 1}),
    "rds-prod-protected": (RDS, {**RDS, "deletionProtection": False}),
    "rds-managed-password": (RDS, {**RDS, "manageMasterUserPassword": False, "password": "hunter2"}),
    "alb-modern-tls": (
        {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"},
        {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-2016-08"},
    ),
    "target-group-sticky-and-ready": (GOOD_TG, {**GOOD_TG, "stickiness": {"enabled": False}}),
    "no-world-ingress": ({"ingress": [WEB]}, {"ingress": [WEB, {**WEB, "fromPort": 22, "toPort": 22}]}),
    "no-world-ingress-rule": (
        {
            "type": "ingress",
            "protocol": "tcp",
            "fromPort": 8000,
            "toPort": 8000,
            "sourceSecurityGroupId": "sg-1",
        },
        {"type": "ingress", "protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["0.0.0.0/0"]},
    ),
    "dynamodb-pitr-encrypted": (
        {"pointInTimeRecovery": {"enabled": True}, "serverSideEncryption": {"enabled": True}},
        {"pointInTimeRecovery": {"enabled": False}, "serverSideEncryption": {"enabled": True}},
    ),
    "weighted-records-health-checked": (
        {"weightedRoutingPolicies": [{"weight": 100}], "healthCheckId": "hc-1", "aliases": ALIAS},
        {"weightedRoutingPolicies": [{"weight": 100}], "aliases": ALIAS},
    ),
    "alb-hardened": (
        {"dropInvalidHeaderFields": True, "enableDeletionProtection": True, "tags": {"environment": "prod"}},
        {"dropInvalidHeaderFields": False, "tags": {"environment": "dev"}},
    ),
    "no-world-ingress-vpc-rule": (
        VPC_RULE,
        {**VPC_RULE, "fromPort": 5432, "toPort": 5432},
    ),
    "alb-access-logs": (ALB, {**ALB, "accessLogs": {"enabled": False, "bucket": "cutover-alb-logs"}}),
    "eks-public-endpoint-restricted": (EKS, {**EKS, "vpcConfig": EKS_VPC}),
    "eks-secrets-encrypted": (EKS, {**EKS, "encryptionConfig": {"resources": ["secrets"]}}),
}


def validate(policy: Any, resource_type: str, props: dict[str, Any]) -> list[str]:
    reported: list[str] = []
    args = SimpleNamespace(resource_type=resource_type, props=props, urn="urn:test", name="test")
    policy.validate(args, lambda message, _urn=None: reported.append(message))
    return reported


def test_there_are_at_least_ten_mandatory_rules_and_each_has_a_case() -> None:
    assert len(rules.RULES) >= 10
    assert {rule.name for rule in rules.RULES} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_passes_the_compliant_resource_and_reports_the_violating_one(name: str) -> None:
    (rule,) = [r for r in rules.RULES if r.name == name]
    (policy,) = [p for p in rules.policies() if p.name == name]
    compliant, violating = CASES[name]
    assert validate(policy, rule.resource_type, compliant) == []
    assert validate(policy, rule.resource_type, violating) != []
    assert validate(policy, "aws:s3/bucket:Bucket", violating) == []  # rules apply to their type only


def test_http_listener_must_redirect() -> None:
    (policy,) = [p for p in rules.policies() if p.name == "alb-modern-tls"]
    forward = {"protocol": "HTTP", "defaultActions": [{"type": "forward", "targetGroupArn": "arn"}]}
    redirect = {
        "protocol": "HTTP",
        "defaultActions": [{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443"}}],
    }
    assert validate(policy, "aws:lb/listener:Listener", forward) == [
        "HTTP listener does not redirect to HTTPS"
    ]
    assert validate(policy, "aws:lb/listener:Listener", redirect) == []


@pytest.mark.parametrize("ssl_policy", PQ_POLICIES)
def test_https_listener_accepts_the_post_quantum_tls13_policies(ssl_policy: str) -> None:
    (policy,) = [p for p in rules.policies() if p.name == "alb-modern-tls"]
    assert validate(policy, "aws:lb/listener:Listener", {"protocol": "HTTPS", "sslPolicy": ssl_policy}) == []


@pytest.mark.parametrize(
    "ssl_policy",
    ["ELBSecurityPolicy-TLS13-1-2-Ext1-PQ-2025-09", "ELBSecurityPolicy-TLS-1-2-2017-01", None],
)
def test_https_listener_refuses_legacy_suites_and_no_policy(ssl_policy: str | None) -> None:
    (policy,) = [p for p in rules.policies() if p.name == "alb-modern-tls"]
    listener = {"protocol": "HTTPS", "sslPolicy": ssl_policy}
    assert validate(policy, "aws:lb/listener:Listener", listener) != []


VPC_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


@pytest.mark.parametrize(
    ("rule", "reported"),
    [
        ({**VPC_RULE, "fromPort": 80, "toPort": 80}, False),  # the ALB's redirect port
        ({**VPC_RULE, "cidrIpv4": None, "cidrIpv6": "::/0"}, False),  # 443 over IPv6
        ({**VPC_RULE, "cidrIpv4": "10.0.0.0/16", "fromPort": 5432, "toPort": 5432}, False),
        ({**VPC_RULE, "cidrIpv4": None, "referencedSecurityGroupId": "sg-2", "fromPort": 8000}, False),
        ({**VPC_RULE, "ipProtocol": "-1", "fromPort": None, "toPort": None}, True),  # everything
        ({**VPC_RULE, "cidrIpv4": None, "cidrIpv6": "::/0", "fromPort": 22, "toPort": 22}, True),
        ({**VPC_RULE, "ipProtocol": "udp"}, True),  # 443/udp is not the ALB
        ({**VPC_RULE, "fromPort": 0, "toPort": 65535}, True),
    ],
)
def test_vpc_security_group_ingress_rules_are_checked_too(rule: dict[str, Any], reported: bool) -> None:
    (policy,) = [p for p in rules.policies() if p.name == "no-world-ingress-vpc-rule"]
    assert bool(validate(policy, VPC_INGRESS, rule)) is reported


@pytest.mark.parametrize(
    ("vpc_config", "reported"),
    [
        ({**EKS_VPC, "endpointPublicAccess": False}, False),  # private only
        ({**EKS_VPC, "publicAccessCidrs": ["198.51.100.7/32", "203.0.113.0/24"]}, False),
        ({**EKS_VPC, "publicAccessCidrs": ["203.0.113.0/24", "0.0.0.0/0"]}, True),
        ({**EKS_VPC, "endpointPublicAccess": None}, True),  # EKS's default: public to everyone
        ({**EKS_VPC, "publicAccessCidrs": ["203.0.113.0/24"], "endpointPrivateAccess": False}, True),
    ],
)
def test_eks_public_endpoint(vpc_config: dict[str, Any], reported: bool) -> None:
    (policy,) = [p for p in rules.policies() if p.name == "eks-public-endpoint-restricted"]
    assert bool(validate(policy, "aws:eks/cluster:Cluster", {**EKS, "vpcConfig": vpc_config})) is reported


@pytest.mark.parametrize(
    "encryption",
    [
        None,
        {"resources": ["secrets"], "provider": {}},
        {"resources": [], "provider": {"keyArn": "arn:aws:kms:eu-west-1:1:key/k"}},
    ],
)
def test_eks_secrets_need_both_the_secrets_resource_and_a_kms_key(encryption: dict[str, Any] | None) -> None:
    (policy,) = [p for p in rules.policies() if p.name == "eks-secrets-encrypted"]
    assert validate(policy, "aws:eks/cluster:Cluster", {**EKS, "encryptionConfig": encryption}) != []


def test_alb_access_logs_need_a_bucket() -> None:
    (policy,) = [p for p in rules.policies() if p.name == "alb-access-logs"]
    assert (
        validate(policy, "aws:lb/loadBalancer:LoadBalancer", {**ALB, "accessLogs": {"enabled": True}}) != []
    )
    assert validate(policy, "aws:lb/loadBalancer:LoadBalancer", {"dropInvalidHeaderFields": True}) != []


# Production checks key on the stack's tier tag (the legacy environment tag still counts),
# and a resource tagged teardown=true (cutover:teardown) is exempt.
PRODUCTION_TAGS: tuple[dict[str, str], ...] = (
    {"environment": "live", "tier": "production"},  # a production stack not named prod
    {"environment": "prod"},  # a stack from before the tier tag
    {"environment": "prod", "tier": "production"},
)
NOT_PRODUCTION_TAGS: tuple[dict[str, str], ...] = (
    {"environment": "prod", "tier": "non-production"},  # the tier decides, not the name
    {"environment": "staging"},
    {"environment": "live", "tier": "production", "teardown": "true"},
    {"environment": "prod", "teardown": "true"},
    {},
)
UNPROTECTED: dict[str, tuple[str, dict[str, Any]]] = {
    "rds-prod-protected": (
        "aws:rds/instance:Instance",
        {**RDS, "deletionProtection": False, "multiAz": False},
    ),
    "alb-hardened": ("aws:lb/loadBalancer:LoadBalancer", {"dropInvalidHeaderFields": True}),
}
PROTECTED: dict[str, dict[str, Any]] = {
    "rds-prod-protected": {**RDS, "deletionProtection": True, "multiAz": True},
    "alb-hardened": {"dropInvalidHeaderFields": True, "enableDeletionProtection": True},
}


@pytest.mark.parametrize("name", sorted(UNPROTECTED))
@pytest.mark.parametrize("tags", PRODUCTION_TAGS)
def test_production_checks_apply_to_the_production_tier_and_legacy_prod(
    name: str, tags: dict[str, str]
) -> None:
    (policy,) = [p for p in rules.policies() if p.name == name]
    resource_type, unprotected = UNPROTECTED[name]
    assert validate(policy, resource_type, {**unprotected, "tags": tags}) != []
    assert validate(policy, resource_type, {**PROTECTED[name], "tags": tags}) == []


@pytest.mark.parametrize("name", sorted(UNPROTECTED))
@pytest.mark.parametrize("tags", NOT_PRODUCTION_TAGS)
def test_production_checks_skip_other_tiers_and_a_teardown(name: str, tags: dict[str, str]) -> None:
    (policy,) = [p for p in rules.policies() if p.name == name]
    resource_type, unprotected = UNPROTECTED[name]
    assert validate(policy, resource_type, {**unprotected, "tags": tags}) == []


def test_a_teardown_exempts_the_protections_only() -> None:
    (policy,) = [p for p in rules.policies() if p.name == "alb-hardened"]
    tags = {"environment": "live", "tier": "production", "teardown": "true"}
    reported = validate(
        policy, "aws:lb/loadBalancer:LoadBalancer", {"dropInvalidHeaderFields": False, "tags": tags}
    )
    assert reported == ["ALB does not drop invalid header fields"]
    assert validate(policy, "aws:lb/loadBalancer:LoadBalancer", {"tags": {**tags, "teardown": "false"}}) == [
        "ALB does not drop invalid header fields",
        "prod ALB has no deletion protection",
    ]
