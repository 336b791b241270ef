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
