"""The policy pack's rules as plain functions.

Resource rules: (resource type, props) -> violations. Stack rules, for promises that span
resources (a VPC and its flow log, a cluster and its log group, the app's keep-alive and
the ALB's idle timeout): [StackResource] -> [(urn, violation)]. Each rule encodes a promise
the platform makes (docs/architecture.md). `policies()` wraps them into pulumi_policy
policies that __main__.py packs (mandatory); tests call the checks and the policies'
own validate functions, and the infra tests run every example stack through all of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Props = Mapping[str, Any]
# TLS 1.3 policies (TLS 1.2 the oldest accepted, no CBC/SHA-1 "Ext" suites). The PQ ones
# (hybrid ML-KEM key exchange, 2025-09) include AWS's recommended
# ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09, the console default since 2025-09.
MODERN_TLS_POLICIES = frozenset(
    {
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09",
    }
)
WORLD = ("0.0.0.0/0", "::/0")
EKS_CLUSTER = "aws:eks/cluster:Cluster"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
REQUIRED_CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")
ALB_DEFAULT_IDLE_TIMEOUT = 60  # seconds, when `idleTimeout` is not set
# pulumi-aws declares the same AWS resources under a second module, `aws.alb` (type tokens
# aws:alb/...): without this, an aws.alb.LoadBalancer would skip every load balancer rule.
TYPE_ALIASES = {
    "aws:alb/loadBalancer:LoadBalancer": LOAD_BALANCER,
    "aws:alb/listener:Listener": "aws:lb/listener:Listener",
    "aws:alb/targetGroup:TargetGroup": "aws:lb/targetGroup:TargetGroup",
}
# A CIDR this wide (or wider) is the internet, or a large part of it: 0.0.0.0/1 +
# 128.0.0.0/1 open as much as 0.0.0.0/0 (config.py refuses the same for the EKS endpoint).
WIDEST_ALLOWED_PREFIX = {4: 8, 6: 16}


def canonical_type(resource_type: str) -> str:
    """The type token the rules are written for (aws:alb/... -> aws:lb/...)."""
    return TYPE_ALIASES.get(resource_type, resource_type)


def _is_world(cidr: Any) -> bool:
    """`cidr` opens to the whole internet or a large part of it (an unparsable one counts)."""
    if cidr in WORLD:
        return True
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return True  # AWS would refuse it anyway; never let it pass as narrow
    return network.prefixlen < WIDEST_ALLOWED_PREFIX[network.version]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    resource_type: str
    check: Callable[[Props], list[str]]


def _production_checked(props: Props) -> bool:
    """Whether the production checks apply: the resource is tagged `tier: production` (the
    program tags every resource with its stack's cutover:tier), or, untiered, `environment:
    prod` (stacks from before the tier tag); and it is not tagged `teardown: "true"`, which
    the program sets only while cutover:teardown lifts the protections for `pulumi destroy`."""
    found = props.get("tags") or {}
    tier = found.get("tier")
    production = tier == "production" if tier is not None else found.get("environment") == "prod"
    return production and found.get("teardown") != "true"


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
    if not _production_checked(props):
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
    check = props.get("healthCheck") or {}
    path = check.get("path")
    if check.get("enabled") is False or not isinstance(path, str) or not path.startswith("/") or path == "/":
        problems.append("target group does not health-check a readiness path (its service's, not /)")
    elif check.get("matcher", "200") != "200":
        problems.append("target group health check accepts more than 200 (a draining 503 must fail it)")
    if props.get("targetType") != "ip":
        problems.append("target group is not of target type ip (pods are registered by IP)")
    return problems


def _ingress_rules(props: Props) -> list[Mapping[str, Any]]:
    return list(props.get("ingress") or [])


def _world_open(rule: Mapping[str, Any]) -> bool:
    blocks = [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]
    return any(_is_world(block) for block in blocks)


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


def _vpc_ingress_rule(props: Props) -> list[str]:
    """aws:vpc/securityGroupIngressRule: one CIDR per rule (cidrIpv4 / cidrIpv6), ipProtocol
    "-1" means every protocol and port."""
    cidrs = [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c]
    if not any(_is_world(c) for c in cidrs):
        return []
    protocol = str(props.get("ipProtocol"))
    if _web_only({"protocol": protocol, "fromPort": props.get("fromPort"), "toPort": props.get("toPort")}):
        return []
    ports = "every port" if protocol == "-1" else f"{props.get('fromPort')}-{props.get('toPort')}"
    return [f"security group ingress rule opens {protocol} {ports} to the world"]


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
    if _production_checked(props) and not props.get("enableDeletionProtection"):
        problems.append("prod ALB has no deletion protection")
    return problems


def _alb_access_logs(props: Props) -> list[str]:
    logs = props.get("accessLogs") or {}
    if logs.get("enabled") and logs.get("bucket"):
        return []
    return ["load balancer writes no access logs: set accessLogs {enabled: true, bucket: <S3 bucket>}"]


def _eks_public_endpoint(props: Props) -> list[str]:
    """EKS's default is a public endpoint open to 0.0.0.0/0."""
    vpc = props.get("vpcConfig") or {}
    if vpc.get("endpointPublicAccess") is False:
        return []
    cidrs = list(vpc.get("publicAccessCidrs") or [])
    problems = []
    if not cidrs or any(_is_world(cidr) for cidr in cidrs):
        problems.append(
            "EKS API endpoint is public to the whole internet: set vpcConfig.publicAccessCidrs "
            "to the admins' and CI's ranges, or endpointPublicAccess false"
        )
    if not vpc.get("endpointPrivateAccess"):
        problems.append(
            "EKS nodes reach the API over the public endpoint: set vpcConfig.endpointPrivateAccess true"
        )
    return problems


def _eks_secrets_encrypted(props: Props) -> list[str]:
    config = props.get("encryptionConfig") or {}
    if "secrets" in (config.get("resources") or []) and (config.get("provider") or {}).get("keyArn"):
        return []
    return [
        "EKS does not envelope-encrypt Secrets with a KMS key: set encryptionConfig "
        '{resources: ["secrets"], provider: {keyArn: <KMS key ARN>}}'
    ]


RULES: tuple[Rule, ...] = (
    Rule("rds-not-public", "RDS instances are never publicly accessible.", "aws:rds/instance:Instance", _rds_private),
    Rule("rds-encrypted", "RDS storage is encrypted.", "aws:rds/instance:Instance", _rds_encrypted),
    Rule("rds-backups", "RDS keeps 7+ days of backups and a final snapshot.", "aws:rds/instance:Instance", _rds_backups),
    Rule("rds-prod-protected", "Production RDS (tagged tier production, or legacy environment prod) has deletion protection and multi-AZ, unless tagged teardown true.", "aws:rds/instance:Instance", _rds_prod_protected),
    Rule("rds-managed-password", "The RDS master password is managed by AWS, never in code.", "aws:rds/instance:Instance", _rds_managed_password),
    Rule("alb-modern-tls", "HTTPS listeners use a TLS 1.3 policy; HTTP listeners redirect to HTTPS.", "aws:lb/listener:Listener", _listener_tls),
    Rule("target-group-sticky-and-ready", "Target groups: ip targets, lb_cookie stickiness, health check on the service's readiness path (not /, 200 only).", "aws:lb/targetGroup:TargetGroup", _target_group),
    Rule("no-world-ingress", "No security group is open to the world, except 80/443 (the ALBs).", "aws:ec2/securityGroup:SecurityGroup", _security_group),
    Rule("no-world-ingress-rule", "No security group rule is open to the world, except 80/443.", "aws:ec2/securityGroupRule:SecurityGroupRule", _security_group_rule),
    Rule("no-world-ingress-vpc-rule", "No VPC security group ingress rule is open to the world, except 80/443.", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", _vpc_ingress_rule),
    Rule("dynamodb-pitr-encrypted", "DynamoDB tables have point-in-time recovery and encryption.", "aws:dynamodb/table:Table", _dynamodb),
    Rule("weighted-records-health-checked", "Weighted Route53 records have health checks and evaluate target health.", "aws:route53/record:Record", _weighted_record),
    Rule("alb-hardened", "ALBs drop invalid headers; production ALBs (tier or legacy environment tag) have deletion protection, unless tagged teardown true.", LOAD_BALANCER, _alb),
    Rule("alb-access-logs", "Load balancers write access logs to an S3 bucket.", LOAD_BALANCER, _alb_access_logs),
    Rule("eks-public-endpoint-restricted", "The EKS API endpoint is private, or public only to listed CIDRs (never 0.0.0.0/0), with private access for the nodes.", EKS_CLUSTER, _eks_public_endpoint),
    Rule("eks-secrets-encrypted", "EKS envelope-encrypts Kubernetes Secrets with a KMS key.", EKS_CLUSTER, _eks_secrets_encrypted),
)  # fmt: skip


@dataclass(frozen=True)
class StackResource:
    """One resource of the stack as a stack rule sees it. `deps` maps a property to the URNs
    of the resources its value came from: during a preview an ID is not known yet, but that
    a flow log's vpcId comes from a given VPC is."""

    type: str
    urn: str
    props: Props
    deps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


StackViolation = tuple[str | None, str]  # (URN of the offending resource, or None; message)


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    check: Callable[[Sequence[StackResource]], list[StackViolation]]


def _of(resources: Iterable[StackResource], type_: str) -> list[StackResource]:
    return [r for r in resources if canonical_type(r.type) == type_]


def _points_to(resource: StackResource, prop: str, target: StackResource, value: Any) -> bool:
    """`resource.prop` refers to `target`: by dependency (known even in a preview), else by value.
    The dependency is checked first so an unknown value is never read when it is not needed."""
    return target.urn in resource.deps.get(prop, ()) or (
        value is not None and resource.props.get(prop) == value
    )


def _control_plane_logs(resources: Sequence[StackResource]) -> list[StackViolation]:
    """EKS creates /aws/eks/<cluster>/cluster itself when it is missing, and keeps its logs
    forever: the program must own that log group, with a retention."""
    found: list[StackViolation] = []
    groups = _of(resources, "aws:cloudwatch/logGroup:LogGroup")
    for cluster in _of(resources, EKS_CLUSTER):
        enabled = set(cluster.props.get("enabledClusterLogTypes") or [])
        missing = [kind for kind in REQUIRED_CONTROL_PLANE_LOGS if kind not in enabled]
        if missing:
            found.append((cluster.urn, f"EKS control-plane logs {', '.join(missing)} are not enabled"))
        expected = f"/aws/eks/{cluster.props.get('name')}/cluster"
        mine = [g for g in groups if _points_to(g, "name", cluster, expected)]
        if not mine:
            found.append(
                (
                    cluster.urn,
                    f"no log group {expected} in the stack: EKS would create one that never expires",
                )
            )
        found += [
            (g.urn, f"log group {expected} has no retentionInDays: control-plane logs would never expire")
            for g in mine
            if not g.props.get("retentionInDays")
        ]
    return found


def _vpc_flow_logs(resources: Sequence[StackResource]) -> list[StackViolation]:
    logs = _of(resources, "aws:ec2/flowLog:FlowLog")
    return [
        (vpc.urn, "VPC has no flow log (an aws:ec2/flowLog:FlowLog whose vpcId is this VPC)")
        for vpc in _of(resources, "aws:ec2/vpc:Vpc")
        if not any(_points_to(log, "vpcId", vpc, vpc.props.get("id")) for log in logs)
    ]


def keep_alive_seconds(values: Props) -> Any:
    """The chart value `http.keepAliveSeconds`, or None when the release does not set it."""
    http = values.get("http") or {}
    return http.get("keepAliveSeconds") if isinstance(http, Mapping) else None


def _keep_alive_outlives_idle_timeout(resources: Sequence[StackResource]) -> list[StackViolation]:
    """An ALB reuses an idle connection for up to its idle timeout; a target that closes it
    first makes the ALB answer 502. So the app's keep-alive must be longer."""
    albs = [
        (alb.urn, int(alb.props.get("idleTimeout") or ALB_DEFAULT_IDLE_TIMEOUT))
        for alb in _of(resources, LOAD_BALANCER)
        if alb.props.get("loadBalancerType", "application") == "application"
    ]
    found: list[StackViolation] = []
    for release in _of(resources, HELM_RELEASE):
        keep_alive = keep_alive_seconds(release.props.get("values") or {})
        if keep_alive is None:
            continue
        try:
            seconds = float(keep_alive)
        except (TypeError, ValueError):
            found.append((release.urn, f"http.keepAliveSeconds is not a number ({keep_alive!r})"))
            continue
        found += [
            (
                release.urn,
                f"http.keepAliveSeconds {keep_alive} is not above the idle timeout {idle} s of ALB {urn}: "
                "the ALB would reuse connections the app already closed (502s)",
            )
            for urn, idle in albs
            if seconds <= idle
        ]
    return found


STACK_RULES: tuple[StackRule, ...] = (
    StackRule("eks-control-plane-logs-retained", "EKS sends api, audit and authenticator logs to a /aws/eks/<cluster>/cluster log group the stack owns, with a retention.", _control_plane_logs),
    StackRule("vpc-flow-logs", "Every VPC has a flow log.", _vpc_flow_logs),
    StackRule("keep-alive-outlives-alb-idle-timeout", "The app's HTTP keep-alive (chart value http.keepAliveSeconds) is longer than every ALB's idle timeout.", _keep_alive_outlives_idle_timeout),
)  # fmt: skip

# Rules the Pulumi program does not satisfy yet, so the harness-based program tests
# (tests/infra/harness.py) skip them; the pack itself always enforces every rule. Each entry
# names what the program must add; tests/infra/test_policy_stack.py fails once an entry is
# no longer needed, so this set only shrinks. Remove an entry when the program complies.
PENDING_IN_PROGRAM: frozenset[str] = frozenset()  # every rule is met by the program now


def violations(resource_type: str, props: Props, skip: frozenset[str] = frozenset()) -> list[str]:
    """Every violation of every resource rule that applies to this resource type."""
    return [
        f"{rule.name}: {problem}"
        for rule in RULES
        if rule.resource_type == canonical_type(resource_type) and rule.name not in skip
        for problem in rule.check(props)
    ]


def stack_violations(resources: Sequence[StackResource], skip: frozenset[str] = frozenset()) -> list[str]:
    """Every violation of every stack rule, as "<rule>: <urn>: <message>"."""
    return [
        f"{rule.name}: {urn or 'stack'}: {message}"
        for rule in STACK_RULES
        if rule.name not in skip
        for urn, message in rule.check(resources)
    ]


def _stack_resource(resource: Any) -> StackResource:
    """A pulumi_policy PolicyResource as a StackResource (props stay the unknown-checking proxy)."""
    deps = {prop: tuple(d.urn for d in on) for prop, on in (resource.property_dependencies or {}).items()}
    return StackResource(resource.resource_type, resource.urn, resource.props, deps)


def policies() -> list[Any]:
    """The rules as pulumi_policy ResourceValidationPolicy and StackValidationPolicy objects
    (what the pack runs)."""
    from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

    def make(rule: Rule) -> Any:
        def validate(args: Any, report_violation: Callable[[str, str | None], None]) -> None:
            if canonical_type(args.resource_type) == rule.resource_type:
                for problem in rule.check(args.props):
                    report_violation(problem, None)

        return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate)

    def make_stack(rule: StackRule) -> Any:
        def validate(args: Any, report_violation: Callable[[str, str | None], None]) -> None:
            for urn, message in rule.check([_stack_resource(r) for r in args.resources]):
                report_violation(message, urn)

        return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate)

    return [*(make(rule) for rule in RULES), *(make_stack(rule) for rule in STACK_RULES)]
