"""The policy pack's rules as plain functions: (resource type, props) -> violations.

Each rule encodes a promise the platform makes (docs/architecture.md). __main__.py wraps
them into a Pulumi PolicyPack (mandatory); tests call `check` directly, and the infra tests
run every registered resource of every example stack through all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Props = Mapping[str, Any]
MODERN_TLS_POLICIES = frozenset(
    {
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    }
)
WORLD = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    resource_type: str
    check: Callable[[Props], list[str]]


def _is_prod(props: Props) -> bool:
    return (props.get("tags") or {}).get("environment") == "prod"


def _rds_private(props: Props) -> list[str]:
    return ["RDS instance is publicly accessible"] if props.get("publiclyAccessible") else []


def _rds_encrypted(props: Props) -> list[str]:
    return [] if props.get("storageEncrypted") else ["RDS storage is not encrypted"]


def _rds_backups(props: Props) -> list[str]:
    days = int(props.get("backupRetentionPeriod") or 0)
    problems = [] if days >= 7 else [f"RDS keeps backups {days} days; at least 7 are required"]
    if props.get("skipFinalSnapshot", True):
        problems.append("RDS skips its final snapshot")
    return problems


def _rds_prod_protected(props: Props) -> list[str]:
    if not _is_prod(props):
        return []
    return [
        problem
        for ok, problem in (
            (props.get("deletionProtection"), "prod RDS has no deletion protection"),
            (props.get("multiAz"), "prod RDS is not multi-AZ"),
        )
        if not ok
    ]


def _rds_managed_password(props: Props) -> list[str]:
    if props.get("password"):
        return ["RDS master password is set in the program; use manageMasterUserPassword"]
    return [] if props.get("manageMasterUserPassword") else ["RDS master password is not managed by AWS"]


def _listener_tls(props: Props) -> list[str]:
    protocol = props.get("protocol")
    if protocol == "HTTPS":
        policy = props.get("sslPolicy")
        return (
            []
            if policy in MODERN_TLS_POLICIES
            else [f"HTTPS listener uses TLS policy {policy!r}, not a TLS 1.3 one"]
        )
    if protocol == "HTTP":
        actions = props.get("defaultActions") or []
        redirects = all(
            a.get("type") == "redirect" and (a.get("redirect") or {}).get("protocol") == "HTTPS"
            for a in actions
        )
        return [] if actions and redirects else ["HTTP listener does not redirect to HTTPS"]
    return []


def _target_group(props: Props) -> list[str]:
    problems = []
    sticky = props.get("stickiness") or {}
    if not (sticky.get("enabled") and sticky.get("type") == "lb_cookie"):
        problems.append("target group has no lb_cookie stickiness")
    if (props.get("healthCheck") or {}).get("path") != "/health/ready":
        problems.append("target group does not health-check /health/ready")
    if props.get("targetType") != "ip":
        problems.append("target group is not of target type ip (pods are registered by IP)")
    return problems


def _ingress_rules(props: Props) -> list[Mapping[str, Any]]:
    return list(props.get("ingress") or [])


def _world_open(rule: Mapping[str, Any]) -> bool:
    blocks = [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]
    return any(block in WORLD for block in blocks)


def _web_only(rule: Mapping[str, Any]) -> bool:
    return rule.get("protocol") in ("tcp", "6") and (rule.get("fromPort"), rule.get("toPort")) in (
        (80, 80),
        (443, 443),
    )


def _security_group(props: Props) -> list[str]:
    return [
        f"security group opens {r.get('protocol')} {r.get('fromPort')}-{r.get('toPort')} to the world"
        for r in _ingress_rules(props)
        if _world_open(r) and not _web_only(r)
    ]


def _security_group_rule(props: Props) -> list[str]:
    if props.get("type") != "ingress" or not _world_open(props) or _web_only(props):
        return []
    return [f"security group rule opens {props.get('fromPort')}-{props.get('toPort')} to the world"]


def _dynamodb(props: Props) -> list[str]:
    problems = []
    if not (props.get("pointInTimeRecovery") or {}).get("enabled"):
        problems.append("DynamoDB table has no point-in-time recovery")
    if not (props.get("serverSideEncryption") or {}).get("enabled"):
        problems.append("DynamoDB table is not encrypted with a KMS key")
    return problems


def _weighted_record(props: Props) -> list[str]:
    if not props.get("weightedRoutingPolicies"):
        return []
    problems = [] if props.get("healthCheckId") else ["weighted record has no health check"]
    if not any(a.get("evaluateTargetHealth") for a in props.get("aliases") or []):
        problems.append("weighted record does not evaluate target health")
    return problems


def _alb(props: Props) -> list[str]:
    problems = [] if props.get("dropInvalidHeaderFields") else ["ALB does not drop invalid header fields"]
    if _is_prod(props) and not props.get("enableDeletionProtection"):
        problems.append("prod ALB has no deletion protection")
    return problems


RULES: tuple[Rule, ...] = (
    Rule("rds-not-public", "RDS instances are never publicly accessible.", "aws:rds/instance:Instance", _rds_private),
    Rule("rds-encrypted", "RDS storage is encrypted.", "aws:rds/instance:Instance", _rds_encrypted),
    Rule("rds-backups", "RDS keeps 7+ days of backups and a final snapshot.", "aws:rds/instance:Instance", _rds_backups),
    Rule("rds-prod-protected", "Prod RDS has deletion protection and multi-AZ.", "aws:rds/instance:Instance", _rds_prod_protected),
    Rule("rds-managed-password", "The RDS master password is managed by AWS, never in code.", "aws:rds/instance:Instance", _rds_managed_password),
    Rule("alb-modern-tls", "HTTPS listeners use a TLS 1.3 policy; HTTP listeners redirect to HTTPS.", "aws:lb/listener:Listener", _listener_tls),
    Rule("target-group-sticky-and-ready", "Target groups: ip targets, lb_cookie stickiness, health check on /health/ready.", "aws:lb/targetGroup:TargetGroup", _target_group),
    Rule("no-world-ingress", "No security group is open to the world, except 80/443 (the ALBs).", "aws:ec2/securityGroup:SecurityGroup", _security_group),
    Rule("no-world-ingress-rule", "No security group rule is open to the world, except 80/443.", "aws:ec2/securityGroupRule:SecurityGroupRule", _security_group_rule),
    Rule("dynamodb-pitr-encrypted", "DynamoDB tables have point-in-time recovery and encryption.", "aws:dynamodb/table:Table", _dynamodb),
    Rule("weighted-records-health-checked", "Weighted Route53 records have health checks and evaluate target health.", "aws:route53/record:Record", _weighted_record),
    Rule("alb-hardened", "ALBs drop invalid headers; prod ALBs have deletion protection.", "aws:lb/loadBalancer:LoadBalancer", _alb),
)  # fmt: skip


def violations(resource_type: str, props: Props) -> list[str]:
    """Every violation of every rule that applies to this resource type."""
    return [
        f"{rule.name}: {problem}"
        for rule in RULES
        if rule.resource_type == resource_type
        for problem in rule.check(props)
    ]


def policies() -> list[Any]:
    """The rules as pulumi_policy ResourceValidationPolicy objects (what the pack runs)."""
    from pulumi_policy import ResourceValidationPolicy

    def make(rule: Rule) -> Any:
        def validate(args: Any, report_violation: Callable[[str, str | None], None]) -> None:
            if args.resource_type == rule.resource_type:
                for problem in rule.check(args.props):
                    report_violation(problem, None)

        return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate)

    return [make(rule) for rule in RULES]
