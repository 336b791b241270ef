"""Stack config -> frozen dataclasses, validated before any resource is declared.

Every key lives in the `cutover` namespace (`pulumi config set cutover:<key> ...`), except
the region (`aws:region`). A bad stack raises ConfigError: one line naming the key, what is
wrong, and how to fix it. Sensitive values (the kubeconfig of an existing cluster) must be
Pulumi secrets (`pulumi config set --secret`); plaintext is refused.

Production behaviour keys on config, never on the stack's name:
- `cutover:tier` (`production` | `non-production`) picks the production-shaped defaults (NAT
  gateway per AZ, multi-AZ RDS with deletion protection, longer backups, 3 replicas) and the
  checks that go with them. Unset, it follows `cutover:environment` (`prod` -> production)
  so existing stacks keep their shape; the example stacks set it explicitly.
- `cutover:protect` is the one switch for every deletion protection (Pulumi `protect`, ALB
  and DynamoDB deletion protection, RDS deletionProtection's default); it defaults to the tier.
- `cutover:teardown: true` lifts every protection (with a loud warning) so that
  `pulumi up` then `pulumi destroy` can remove the stack; RDS still takes its final snapshot.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from cutover_infra.budget import (
    ALB_IDLE_TIMEOUT_SECONDS,
    DEFAULT_KEEP_ALIVE_SECONDS,
    DrainBudget,
    DrainBudgetError,
    budget_for_deregistration,
)

COLORS = ("blue", "green")


class ConfigError(ValueError):
    """The stack's config is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str = "10.20.0.0/16"
    availability_zones: tuple[str, ...] = ()
    nat_gateway_per_az: bool = False
    flow_log_retention_days: int = 90  # the VPC flow logs' log group (a created VPC only)


@dataclass(frozen=True)
class ExistingCluster:
    name: str
    oidc_provider_arn: str
    oidc_issuer_url: str
    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    node_security_group_id: str
    vpc_cidr: str


@dataclass(frozen=True)
class ClusterAccess:
    """IAM roles given EKS access entries on a cluster this stack creates (`cutover:cluster.access`).

    admins: AmazonEKSClusterAdminPolicy; release (CI running `pulumi up`): the same, since the
    program installs cluster-scoped objects; preview (CI running `pulumi preview`):
    AmazonEKSViewPolicy. The identity that runs `pulumi up` must be an admin or release role:
    the creator gets no implicit admin entry. An existing cluster's access is its owner's."""

    admins: tuple[str, ...] = ()
    release: tuple[str, ...] = ()
    preview: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    """`cutover:cluster`. `version` is a string ("1.36"; YAML reads an unquoted 1.30 as 1.3);
    `supportType` STANDARD (default: EKS upgrades the cluster at the end of standard support
    rather than billing extended support) or EXTENDED; `access` (created clusters only);
    `loadBalancerController`: install the AWS Load Balancer Controller (default: only into a
    cluster this stack creates; a shared cluster's owner runs its own). Created clusters only:
    `publicAccessCidrs` (the API endpoint is public to these IPv4 ranges only) or
    `endpointPublicAccess: false` (private only), one of them required; `logRetentionDays`
    (control-plane logs, default 90)."""

    create: bool = True
    # EKS standard support for 1.36 runs to August 2027 (EKS release June 2026 + 14 months);
    # 1.33 and 1.34 leave standard support on 2026-07-29 and 2026-12-02.
    version: str = "1.36"
    support_type: str = "STANDARD"
    node_instance_type: str = "m6i.large"
    node_min: int = 2
    node_max: int = 4  # parse: at least nodeMin
    node_desired: int = node_min  # parse: nodeDesired defaults to the stack's nodeMin
    existing: ExistingCluster | None = None
    access: ClusterAccess = field(default_factory=ClusterAccess)
    load_balancer_controller: bool = True  # parse: defaults to `create`
    # The API endpoint (created clusters): public only to `publicAccessCidrs`, or private only
    # (`endpointPublicAccess: false`); one of the two must be chosen. Private access is always on.
    endpoint_public_access: bool = False
    public_access_cidrs: tuple[str, ...] = ()
    log_retention_days: int = 90  # /aws/eks/<cluster>/cluster, the control-plane logs


@dataclass(frozen=True)
class DatabaseConfig:
    """`cutover:database`: the stack's Postgres instance, made when a service asks for it."""

    name: str = ""  # the database (and master user, and instance identifier suffix); parse: required then
    instance_class: str = "db.t4g.medium"
    allocated_storage: int = 20
    max_allocated_storage: int = 100  # parse: at least allocatedStorage
    multi_az: bool = False
    backup_retention_days: int = 7
    deletion_protection: bool = False  # parse: defaults to cutover:protect
    engine_version: str = "16"
    cidr: str = ""  # where the database lives: the chart's Postgres egress NetworkPolicy rule


@dataclass(frozen=True)
class ColorConfig:
    image: str
    replicas: int = 2


@dataclass(frozen=True)
class TrafficConfig:
    initial_weights: Mapping[str, int] = field(default_factory=lambda: {"blue": 100, "green": 0})
    ttl: int = 60
    stickiness_seconds: int = 3600


@dataclass(frozen=True)
class DrainConfig:
    """`cutover:drain`, the inputs of the drain budget (`budget_for_deregistration`)."""

    deregistration_delay_seconds: int = 10
    drain_seconds: float = 5.0
    shutdown_timeout_seconds: float = 20.0
    margin_seconds: int = 5


# The app's keep-alive defaults to this much over the ALB's idle timeout, when that is raised.
KEEP_ALIVE_OVER_IDLE_SECONDS = 15


@dataclass(frozen=True)
class LoadBalancerConfig:
    idle_timeout_seconds: int = ALB_IDLE_TIMEOUT_SECONDS
    # must outlive the ALB's idle timeout (else 502s); parse: at least idle + KEEP_ALIVE_OVER_IDLE_SECONDS
    app_keep_alive_seconds: int = DEFAULT_KEEP_ALIVE_SECONDS
    access_log_retention_days: int = 90  # the ALBs' access logs bucket expires older logs


@dataclass(frozen=True)
class RegistryConfig:
    # an ECR repository made by the program (its URL is the imageRepository); parse: defaults
    # to true when cutover:imageRepository is unset
    create: bool = False
    keep_images: int = 100  # the lifecycle policy expires older images


TIERS = ("production", "non-production")


@dataclass(frozen=True)
class HealthPaths:
    """The three paths every service answers (the chart's probes, the ALB's and Route53's checks)."""

    live: str = "/health/live"
    ready: str = "/health/ready"
    startup: str = "/health/startup"


@dataclass(frozen=True)
class SecretRef:
    """A key of a Kubernetes Secret in the service's namespace (created by its team)."""

    secret: str
    key: str


DATABASE_MODES = ("none", "provisioned", "secret")


@dataclass(frozen=True)
class ServiceDatabase:
    """`none`; `provisioned`: the stack's Postgres (cutover:database), the pods logging in as
    `user` with IAM tokens and the migration Job with the managed master secret; `secret`: a
    URL the team keeps in a Secret of the namespace (`url`)."""

    mode: str = "none"
    user: str = ""  # provisioned
    url: SecretRef | None = None  # secret


@dataclass(frozen=True)
class Autoscaling:
    """A HorizontalPodAutoscaler per color, from the color's replicas up to `max_replicas`."""

    max_replicas: int
    target_cpu_percent: int = 70


@dataclass(frozen=True)
class ServiceConfig:
    """One entry of `cutover:services`: a blue/green service and everything cutover needs."""

    name: str
    cutover_env: str  # `cutover --env` name, release lock/state key; names its resources
    domain: str
    image_repository: str  # "" with registry.create: the repository the program makes
    colors: Mapping[str, ColorConfig]
    drain: DrainBudget
    keep_alive_seconds: int
    port: int = 8000
    health: HealthPaths = field(default_factory=HealthPaths)
    database: ServiceDatabase = field(default_factory=ServiceDatabase)
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, SecretRef] = field(default_factory=dict)
    autoscaling: Autoscaling | None = None
    chart_values: Mapping[str, Any] = field(default_factory=dict)  # the service's own chart values
    chart: str = ""  # its own chart (meeting the same values contract); "": cutover:chart
    rule_priority: int = 0  # its host rules' priority on the colors' listeners; parse: from its name


@dataclass(frozen=True)
class StackConfig:
    environment: str
    region: str
    hosted_zone_id: str
    network: NetworkConfig
    cluster: ClusterConfig
    database: DatabaseConfig
    services: tuple[ServiceConfig, ...]
    traffic: TrafficConfig
    protect: bool
    chart: str  # the service chart every service is installed from, unless it names its own
    default_service: str = ""  # whose certificate is the listeners' default; parse: see _default_service
    tier: str = "non-production"
    teardown: bool = False
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    @property
    def is_production(self) -> bool:
        return self.tier == "production"

    @property
    def needs_database(self) -> bool:
        """Whether a service uses the stack's Postgres (else none is made)."""
        return any(s.database.mode == "provisioned" for s in self.services)


# The production tier's defaults, where they differ from the dataclasses' (non-production)
# ones: the only tier-dependent defaults. `cutover:protect` (and with it
# database.deletionProtection) defaults to the tier too: true for production.
PRODUCTION_DEFAULTS: dict[tuple[type, str], object] = {
    (NetworkConfig, "nat_gateway_per_az"): True,
    (DatabaseConfig, "multi_az"): True,
    (DatabaseConfig, "backup_retention_days"): 14,
    (ColorConfig, "replicas"): 3,
}


def default(cls: type, name: str, production: bool = False) -> Any:
    """The default of `cls.name`: the dataclass field's, or PRODUCTION_DEFAULTS' for the
    production tier. Every parser takes its defaults from here, so each lives in one place."""
    if production and (cls, name) in PRODUCTION_DEFAULTS:
        return PRODUCTION_DEFAULTS[(cls, name)]
    spec = next(f for f in fields(cls) if f.name == name)
    if spec.default is MISSING and spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


# --------------------------------------------------------------------------- parsing

_KNOWN = {
    "network": {"cidr", "availabilityZones", "natGatewayPerAz", "flowLogRetentionDays"},
    "cluster": {
        "create", "version", "nodeInstanceType", "nodeMin", "nodeMax", "nodeDesired", "name", "oidcProviderArn",
        "oidcIssuerUrl", "vpcId", "publicSubnetIds", "privateSubnetIds", "nodeSecurityGroupId", "vpcCidr",
        "supportType", "access", "loadBalancerController", "endpointPublicAccess", "publicAccessCidrs",
        "logRetentionDays",
    },
    "database": {
        "name", "instanceClass", "allocatedStorage", "maxAllocatedStorage", "multiAz", "backupRetentionDays",
        "deletionProtection", "engineVersion", "cidr",
    },
    "loadBalancer": {"idleTimeoutSeconds", "appKeepAliveSeconds", "accessLogRetentionDays", "defaultService"},
    "registry": {"create", "keepImages"},
    "traffic": {"initialWeights", "ttl", "stickinessSeconds"},
    "drain": {"deregistrationDelaySeconds", "drainSeconds", "shutdownTimeoutSeconds", "marginSeconds"},
}  # fmt: skip
_SERVICE_KEYS = {
    "chart", "cutoverEnv", "rulePriority", "domain", "imageRepository", "blueImage", "greenImage", "colors", "drain", "port",
    "health", "database", "env", "secretEnv", "autoscaling", "keepAliveSeconds", "chartValues",
}  # fmt: skip
_TOP = {
    "chart", "environment", "hostedZoneId", "network", "cluster", "database", "services", "traffic", "protect",
    "kubeconfig", "tier", "teardown", "loadBalancer", "registry",
}  # fmt: skip
# Keys of the single-service layout, now keys of each entry of cutover:services.
_MOVED_TO_SERVICES = ("domain", "imageRepository", "blueImage", "greenImage", "colors", "drain")

_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{6,31}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[a-f0-9]{64})?$")  # tag[@digest]
_INSTANCE_CLASS = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")


def _fail(key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"cutover:{key} {problem}; fix: {fix}")


def _object(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise _fail(key, "must be an object", f"pulumi config set --path cutover:{key}.<field> <value>")
    unknown = sorted(set(value) - _KNOWN.get(key, set(value)))
    if unknown:
        raise _fail(
            f"{key}.{unknown[0]}",
            "is not a known key",
            f"use one of {', '.join(sorted(_KNOWN[key]))} (a typo?)",
        )
    return value


def _mapping(parent: Mapping[str, Any], key: str, path: str, shape: str, fix: str) -> dict[str, Any]:
    """The object at `key` (unset or null: empty; `false`, `0`, `""` are not objects)."""
    value = parent.get(key)
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object{shape}", fix)
    return value


def _section(parent: Mapping[str, Any], key: str, path: str, known: set[str]) -> dict[str, Any]:
    """A nested object at `path` (e.g. services.api.drain): an object with only `known` keys
    (unset or null: empty; `false`, `0`, `""` are not objects)."""
    value = _mapping(parent, key, path, "", f"pulumi config set --path cutover:{path}.<field> <value>")
    unknown = sorted(set(value) - known)
    if unknown:
        raise _fail(
            f"{path}.{unknown[0]}", "is not a known key", f"use one of {', '.join(sorted(known))} (a typo?)"
        )
    return value


def _int(section: dict[str, Any], key: str, path: str, default: int, low: int, high: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(
            path,
            f"must be a whole number from {low} to {high} (got {value!r:.80})",
            f"pulumi config set --path cutover:{path} <n>",
        )
    return value


def _number(section: dict[str, Any], key: str, path: str, default: float, low: float, high: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(
            path,
            f"must be a number from {low:g} to {high:g} (got {value!r:.80})",
            f"pulumi config set --path cutover:{path} <n>",
        )
    return float(value)


def _bool(section: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise _fail(
            path,
            f"must be true or false (got {value!r:.80})",
            f"pulumi config set --path cutover:{path} true",
        )
    return value


def _string(
    section: Mapping[str, Any], key: str, path: str, pattern: re.Pattern[str] | None = None, example: str = ""
) -> str:
    value = section.get(key)
    if (
        not isinstance(value, str)
        or not value
        or (pattern is not None and not pattern.match(value))
        or any(ord(c) < 32 for c in value)  # a trailing newline slips past `$`
    ):
        raise _fail(
            path,
            f"is missing or invalid (got {value!r:.80})",
            f"pulumi config set cutover:{path} {example or '<value>'}",
        )
    return value


def _strings(section: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = section.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(
            path,
            "must be a non-empty list of strings",
            f"pulumi config set --path 'cutover:{path}[0]' <value>",
        )
    return tuple(value)


# cutover:cluster: version, support type, access entries, Load Balancer Controller
_K8S_VERSION = re.compile(r"^1\.\d{2}$")
_ROLE_ARN = re.compile(r"^arn:aws[-a-z]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
ACCESS_LEVELS = ("admins", "release", "preview")
_NO_ACCESS = "names no admins or release role (only listed roles reach the cluster, pulumi up's own too)"
_ADD_ADMIN = "pulumi config set --path 'cutover:cluster.access.admins[0]' arn:aws:iam::<account>:role/<role>"


def _cluster_version(cl: Mapping[str, Any]) -> str:
    version = default(ClusterConfig, "version")
    value = cl.get("version", version)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _fail(
            "cluster.version",
            f"is the number {value!r}, not a string (YAML reads an unquoted 1.30 as 1.3)",
            f'quote it in Pulumi.<stack>.yaml: version: "{version}"',
        )
    if not isinstance(value, str) or not _K8S_VERSION.match(value):
        raise _fail(
            "cluster.version",
            f'must be a Kubernetes minor version such as "{version}" (got {value!r:.80})',
            f"pulumi config set --path cutover:cluster.version {version}",
        )
    return value


def _support_type(cl: Mapping[str, Any]) -> str:
    value = cl.get("supportType", default(ClusterConfig, "support_type"))
    if value not in ("STANDARD", "EXTENDED"):
        raise _fail(
            "cluster.supportType",
            f"must be STANDARD or EXTENDED (got {value!r:.80})",
            "pulumi config set --path cutover:cluster.supportType STANDARD",
        )
    return str(value)


def _cluster_access(cl: Mapping[str, Any], create: bool) -> ClusterAccess:
    raw = cl.get("access")
    if raw is not None and not create:
        raise _fail(
            "cluster.access",
            "applies only to a cluster this stack creates (an existing cluster's access is its owner's)",
            "pulumi config rm --path cutover:cluster.access",
        )
    if not create:
        return ClusterAccess()
    if not isinstance(raw, dict):
        raise _fail("cluster.access", _NO_ACCESS if raw is None else "must be an object", _ADD_ADMIN)
    unknown = sorted(set(raw) - set(ACCESS_LEVELS))
    if unknown:
        raise _fail(f"cluster.access.{unknown[0]}", "is not a known key", "use admins, release or preview")
    seen: dict[str, str] = {}
    for level in ACCESS_LEVELS:
        roles = raw.get(level) or []
        if not isinstance(roles, list):
            raise _fail(f"cluster.access.{level}", "must be a list of IAM role ARNs", _ADD_ADMIN)
        for index, role in enumerate(roles):
            path = f"cluster.access.{level}[{index}]"
            if not isinstance(role, str) or not _ROLE_ARN.match(role):
                raise _fail(
                    path,
                    f"must be an IAM role ARN arn:aws:iam::<12 digits>:role/<name> (got {role!r:.80})",
                    f"pulumi config set --path 'cutover:{path}' arn:aws:iam::123456789012:role/<name>",
                )
            if role in seen:
                raise _fail(path, f"repeats a role of cluster.access.{seen[role]}", "list each role once")
            seen[role] = level
    access = ClusterAccess(*(tuple(raw.get(level) or ()) for level in ACCESS_LEVELS))
    if not (access.admins or access.release):
        raise _fail("cluster.access", _NO_ACCESS, _ADD_ADMIN)
    return access


def _load_balancer_controller(cl: Mapping[str, Any], create: bool) -> bool:
    install = _bool(cl, "loadBalancerController", "cluster.loadBalancerController", create)
    if create and not install:
        # Nothing else would register the pods in their target groups: refuse, not warn.
        raise _fail(
            "cluster.loadBalancerController",
            "cannot be false when cluster.create is true (nothing else would register the pods)",
            "pulumi config rm --path cutover:cluster.loadBalancerController",
        )
    return install


# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
MAX_PUBLIC_ACCESS_CIDRS = 40  # EKS quota: public endpoint access CIDR ranges per cluster
WIDEST_PUBLIC_ACCESS_PREFIX = 8  # wider blocks (0.0.0.0/1 + 128.0.0.0/1, ...) are the internet again
_CREATED_CLUSTER_ONLY = ("endpointPublicAccess", "publicAccessCidrs", "logRetentionDays")
_SET_CIDR = "pulumi config set --path 'cutover:cluster.publicAccessCidrs[0]' <CI and admin egress CIDR>"
_GO_PRIVATE = (
    "pulumi config set --path cutover:cluster.endpointPublicAccess false (then run pulumi inside the VPC)"
)


def log_retention(section: Mapping[str, Any], key: str, path: str, fallback: int) -> int:
    """A CloudWatch Logs retention in days (`fallback` when unset): one CloudWatch accepts."""
    value = section.get(key, fallback)
    if isinstance(value, bool) or value not in LOG_RETENTION_DAYS:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        above = [d for d in LOG_RETENTION_DAYS if number and d >= value]
        raise _fail(
            path,
            f"must be a CloudWatch Logs retention period, one of {', '.join(map(str, LOG_RETENTION_DAYS))} "
            f"(got {value!r:.80})",
            f"pulumi config set --path cutover:{path} {above[0] if above else fallback}",
        )
    return int(value)


def public_access_cidr_problem(cidr: object) -> tuple[str, str] | None:
    """Why `cidr` cannot be an entry of the EKS public endpoint's allow list, with the value
    to use instead (or None when it can). The clusters are IPv4: EKS takes IPv6 ranges only
    for IPv6 clusters."""
    if not isinstance(cidr, str) or "/" not in cidr:
        return f"must be an IPv4 CIDR such as 203.0.113.0/24 (got {cidr!r:.80})", "203.0.113.0/24"
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return f"must be an IPv4 CIDR such as 203.0.113.0/24 (got {cidr!r:.80})", "203.0.113.0/24"
    if network.version == 6:
        return f"is IPv6 ({cidr}); the cluster is IPv4 and EKS accepts IPv4 ranges only", "<IPv4 CIDR>"
    if network.prefixlen < WIDEST_PUBLIC_ACCESS_PREFIX:
        return (
            f"opens the API endpoint to the whole internet or a large part of it ({cidr}); list the "
            f"ranges CI and the admins connect from (/{WIDEST_PUBLIC_ACCESS_PREFIX} or narrower)",
            "<CI and admin egress CIDR>",
        )
    if str(network) != cidr:
        return f"has host bits set or is not canonical (got {cidr}; the network is {network})", str(network)
    return None


def _public_endpoint(cl: Mapping[str, Any], create: bool) -> tuple[bool, tuple[str, ...]]:
    """(endpointPublicAccess, publicAccessCidrs) for a created cluster. No default: a public
    endpoint open to 0.0.0.0/0 (EKS's) is refused, and a private-only one (the safest) breaks
    every `pulumi up` run from outside the VPC, so the stack says which it wants."""
    if not create:
        return False, ()
    cidrs = cl.get("publicAccessCidrs") or []
    if not isinstance(cidrs, list):
        raise _fail("cluster.publicAccessCidrs", f"must be a list of CIDRs (got {cidrs!r:.80})", _SET_CIDR)
    chosen = "endpointPublicAccess" in cl
    public = _bool(cl, "endpointPublicAccess", "cluster.endpointPublicAccess", bool(cidrs))
    if not cidrs and (public or not chosen):
        problem = (
            "is empty while endpointPublicAccess is true (EKS would open the API endpoint to 0.0.0.0/0)"
            if chosen
            else "is not set: the EKS API endpoint must be public to listed ranges only, or private"
        )
        raise _fail("cluster.publicAccessCidrs", problem, f"{_SET_CIDR}, or {_GO_PRIVATE}")
    if cidrs and not public:
        raise _fail(
            "cluster.publicAccessCidrs",
            "is set while endpointPublicAccess is false (no public endpoint to restrict)",
            "pulumi config rm --path cutover:cluster.publicAccessCidrs, or set endpointPublicAccess true",
        )
    if len(cidrs) > MAX_PUBLIC_ACCESS_CIDRS:
        raise _fail(
            "cluster.publicAccessCidrs",
            f"lists {len(cidrs)} ranges; EKS takes at most {MAX_PUBLIC_ACCESS_CIDRS}",
            "merge them into fewer, wider ranges",
        )
    for index, cidr in enumerate(cidrs):
        found = public_access_cidr_problem(cidr)
        if found is not None:
            path = f"cluster.publicAccessCidrs[{index}]"
            raise _fail(path, found[0], f"pulumi config set --path 'cutover:{path}' {found[1]}")
        if cidrs.index(cidr) != index:
            raise _fail(f"cluster.publicAccessCidrs[{index}]", f"repeats {cidr}", "list each range once")
    return public, tuple(cidrs)


def _created_cluster_only(cl: Mapping[str, Any], net: Mapping[str, Any], create: bool) -> None:
    """The endpoint, the control-plane log group and the VPC flow logs of an existing cluster
    and VPC are their owner's: refuse keys that would do nothing."""
    if create:
        return
    for key in _CREATED_CLUSTER_ONLY:
        if key in cl:
            raise _fail(
                f"cluster.{key}",
                "applies only to a cluster this stack creates (an existing cluster's is its owner's)",
                f"pulumi config rm --path cutover:cluster.{key}",
            )
    if "flowLogRetentionDays" in net:
        raise _fail(
            "network.flowLogRetentionDays",
            "applies only to a VPC this stack creates (an existing VPC's flow logs are its owner's)",
            "pulumi config rm --path cutover:network.flowLogRetentionDays",
        )


def parse(
    raw: Mapping[str, Any], *, stack: str, region: str | None, is_secret: Callable[[str], bool]
) -> StackConfig:
    """Validate raw config (the `cutover:` keys, objects already decoded) into a StackConfig.

    One function per section, called in this order (the first bad key found is the one named);
    each takes its defaults from `default` (the dataclasses and PRODUCTION_DEFAULTS)."""
    moved = [key for key in _MOVED_TO_SERVICES if key in raw]
    if moved:
        raise _fail(
            moved[0],
            "belongs to a service now: a stack lists its services under cutover:services",
            f"move it to cutover:services.<name>.{moved[0]} (docs/onboarding.md, 'Upgrading a "
            "single-service stack': keep cutoverEnv equal to the environment so nothing is replaced)",
        )
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise _fail(unknown[0], "is not a known key", f"use one of {', '.join(sorted(_TOP))} (a typo?)")
    if not region:
        raise ConfigError("aws:region is not set; fix: pulumi config set aws:region eu-west-1")
    environment = _environment(raw, stack)
    tier = _tier(raw, environment)
    production = tier == "production"
    teardown = _bool(raw, "teardown", "teardown", default(StackConfig, "teardown"))
    protect = False if teardown else _bool(raw, "protect", "protect", production)

    zone = _string(raw, "hostedZoneId", "hostedZoneId", _ZONE_ID, "Z0123456789ABCDEFGHIJ")
    registry = _registry(raw)
    network = _network(raw, region, production)
    cluster = _cluster(raw, is_secret)
    load_balancer = _load_balancer(raw)
    services = _services(raw, environment, production, registry, load_balancer)
    database = _database(
        raw, network, cluster.existing, production=production, protect=protect, teardown=teardown
    )
    masters = [s for s in services if s.database.mode == "provisioned" and s.database.user == database.name]
    if masters:
        raise _fail(
            f"services.{masters[0].name}.database.user",
            f"is the database's master user ({database.name}): the pods must log in as a role of their own",
            f"pulumi config set --path cutover:services.{masters[0].name}.database.user {masters[0].name}_app",
        )
    if any(s.database.mode == "provisioned" for s in services) and not database.name:
        user = next(s for s in services if s.database.mode == "provisioned")
        raise _fail(
            "database.name",
            f"is not set, and service {user.name} asks for the provisioned database",
            "pulumi config set --path cutover:database.name <name> (the database, its master user and "
            "the instance's identifier cutover-<env>-<name>: never change it once created)",
        )
    return StackConfig(
        environment=environment,
        region=region,
        hosted_zone_id=zone,
        network=network,
        cluster=cluster,
        database=database,
        services=services,
        traffic=_traffic(raw),
        protect=protect,
        chart=_chart(raw, "chart", "chart"),
        default_service=_default_service(raw, environment, services),
        tier=tier,
        teardown=teardown,
        load_balancer=load_balancer,
        registry=registry,
    )


def _environment(raw: Mapping[str, Any], stack: str) -> str:
    """`cutover:environment`, default the stack's name."""
    environment = str(raw.get("environment") or stack)
    if environment not in ("dev", "staging", "prod") and not re.match(r"^[a-z][a-z0-9-]{1,20}$", environment):
        raise _fail(
            "environment",
            f"must be a short lowercase name (got {environment!r:.80})",
            "pulumi config set cutover:environment dev",
        )
    return environment


def _tier(raw: Mapping[str, Any], environment: str) -> str:
    """`cutover:tier`, default production for the `prod` environment (existing stacks keep
    their shape), else the dataclass's."""
    tier = raw.get("tier", "production" if environment == "prod" else default(StackConfig, "tier"))
    if tier not in TIERS:
        raise _fail(
            "tier",
            f"must be production or non-production (got {tier!r:.80})",
            "pulumi config set cutover:tier production",
        )
    return str(tier)


def _network(raw: Mapping[str, Any], region: str, production: bool) -> NetworkConfig:
    """`cutover:network`; availabilityZones default to the region's a, b and c."""
    net = _object(raw, "network")
    cidr = str(net.get("cidr", default(NetworkConfig, "cidr")))
    listed = net.get("availabilityZones") or (f"{region}a", f"{region}b", f"{region}c")
    zones = tuple(listed) if isinstance(listed, list | tuple) else ()
    if (
        len(zones) < 2
        or len(set(zones)) != len(zones)
        or not all(isinstance(z, str) and z.startswith(region) for z in zones)
    ):
        raise _fail(
            "network.availabilityZones",
            f"must list at least two distinct zones of {region} (got {listed!r:.80})",
            f"pulumi config set --path 'cutover:network.availabilityZones[1]' {region}b",
        )
    _check_network_cidr(cidr, len(zones))
    return NetworkConfig(
        cidr,
        zones,
        _bool(
            net,
            "natGatewayPerAz",
            "network.natGatewayPerAz",
            default(NetworkConfig, "nat_gateway_per_az", production),
        ),
        log_retention(
            net,
            "flowLogRetentionDays",
            "network.flowLogRetentionDays",
            default(NetworkConfig, "flow_log_retention_days"),
        ),
    )


def _cluster(raw: Mapping[str, Any], is_secret: Callable[[str], bool]) -> ClusterConfig:
    """`cutover:cluster` (and `cutover:kubeconfig`, the secret an existing cluster needs)."""
    cl = _object(raw, "cluster")
    create = _bool(cl, "create", "cluster.create", default(ClusterConfig, "create"))
    _created_cluster_only(cl, _object(raw, "network"), create)
    existing = None if create else _existing_cluster(raw, cl)
    if "kubeconfig" in raw and not is_secret("kubeconfig"):
        raise _fail(
            "kubeconfig",
            "is stored in plaintext",
            'pulumi config set --secret cutover:kubeconfig "$(cat kubeconfig.yaml)"',
        )
    endpoint_public_access, public_access_cidrs = _public_endpoint(cl, create)
    node_min = _int(cl, "nodeMin", "cluster.nodeMin", default(ClusterConfig, "node_min"), 1, 100)
    node_max = _int(
        cl, "nodeMax", "cluster.nodeMax", max(default(ClusterConfig, "node_max"), node_min), node_min, 200
    )
    return ClusterConfig(
        create=create,
        version=_cluster_version(cl),
        support_type=_support_type(cl),
        node_instance_type=str(cl.get("nodeInstanceType", default(ClusterConfig, "node_instance_type"))),
        node_min=node_min,
        node_max=node_max,
        node_desired=_int(cl, "nodeDesired", "cluster.nodeDesired", node_min, node_min, node_max),
        existing=existing,
        access=_cluster_access(cl, create),
        load_balancer_controller=_load_balancer_controller(cl, create),
        endpoint_public_access=endpoint_public_access,
        public_access_cidrs=public_access_cidrs,
        log_retention_days=log_retention(
            cl, "logRetentionDays", "cluster.logRetentionDays", default(ClusterConfig, "log_retention_days")
        ),
    )


def _existing_cluster(raw: Mapping[str, Any], cl: dict[str, Any]) -> ExistingCluster:
    """The cluster (and VPC) this stack deploys into when `cluster.create` is false."""
    if "kubeconfig" not in raw:
        raise _fail(
            "kubeconfig",
            "is required when cluster.create is false",
            'pulumi config set --secret cutover:kubeconfig "$(cat kubeconfig.yaml)"',
        )
    return ExistingCluster(
        name=_string(cl, "name", "cluster.name"),
        oidc_provider_arn=_string(
            cl,
            "oidcProviderArn",
            "cluster.oidcProviderArn",
            re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/"),
        ),
        oidc_issuer_url=_string(cl, "oidcIssuerUrl", "cluster.oidcIssuerUrl", re.compile(r"^https://")),
        vpc_id=_string(cl, "vpcId", "cluster.vpcId", re.compile(r"^vpc-[0-9a-f]+$")),
        public_subnet_ids=_strings(cl, "publicSubnetIds", "cluster.publicSubnetIds"),
        private_subnet_ids=_strings(cl, "privateSubnetIds", "cluster.privateSubnetIds"),
        node_security_group_id=_string(
            cl, "nodeSecurityGroupId", "cluster.nodeSecurityGroupId", re.compile(r"^sg-[0-9a-f]+$")
        ),
        vpc_cidr=_vpc_cidr(cl),
    )


def _database(
    raw: Mapping[str, Any],
    network: NetworkConfig,
    existing: ExistingCluster | None,
    *,
    production: bool,
    protect: bool,
    teardown: bool,
) -> DatabaseConfig:
    """`cutover:database`; deletionProtection defaults to cutover:protect (off while tearing
    down), and the production tier requires it and multiAz."""
    db = _object(raw, "database")
    instance_class = str(db.get("instanceClass", default(DatabaseConfig, "instance_class")))
    if not _INSTANCE_CLASS.match(instance_class):
        raise _fail(
            "database.instanceClass",
            f"must look like db.<family>.<size> (got {instance_class!r:.80})",
            "pulumi config set --path cutover:database.instanceClass db.r6g.large",
        )
    allocated = _int(
        db,
        "allocatedStorage",
        "database.allocatedStorage",
        default(DatabaseConfig, "allocated_storage"),
        20,
        65536,
    )
    most = max(default(DatabaseConfig, "max_allocated_storage"), allocated)
    name = db.get("name", "")
    if name and (not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_]{0,30}$", name)):
        raise _fail(
            "database.name",
            f"must be a lowercase Postgres name (got {name!r:.80})",
            "pulumi config set --path cutover:database.name orders",
        )
    database = DatabaseConfig(
        name=name,
        instance_class=instance_class,
        allocated_storage=allocated,
        max_allocated_storage=_int(
            db, "maxAllocatedStorage", "database.maxAllocatedStorage", most, allocated, 65536
        ),
        multi_az=_bool(db, "multiAz", "database.multiAz", default(DatabaseConfig, "multi_az", production)),
        backup_retention_days=_int(
            db,
            "backupRetentionDays",
            "database.backupRetentionDays",
            default(DatabaseConfig, "backup_retention_days", production),
            1,
            35,
        ),
        deletion_protection=False
        if teardown
        else _bool(db, "deletionProtection", "database.deletionProtection", protect),
        engine_version=str(db.get("engineVersion", default(DatabaseConfig, "engine_version"))),
        cidr=_database_cidr(db, network, existing),
    )
    if production and not teardown and not (database.deletion_protection and database.multi_az):
        raise _fail(
            "database",
            "must have deletionProtection and multiAz in prod (tier production)",
            "pulumi config set --path cutover:database.deletionProtection true (and multiAz); "
            "to tear the stack down: pulumi config set cutover:teardown true",
        )
    return database


def _colors(section: Mapping[str, Any], at: str, production: bool) -> dict[str, ColorConfig]:
    """A service's `colors` (replicas per color) and `<color>Image`; `at` is its key path."""
    colors_raw = section.get("colors")
    colors_raw = {} if colors_raw is None else colors_raw
    if isinstance(colors_raw, str):  # `pulumi config set --path ...colors '<json>'` stores a string
        try:
            colors_raw = json.loads(colors_raw)
        except json.JSONDecodeError:
            colors_raw = None
    if not isinstance(colors_raw, dict) or set(colors_raw) - set(COLORS):
        raise _fail(
            f"{at}.colors",
            "must be an object with blue and/or green",
            f"pulumi config set --path cutover:{at}.colors.blue.replicas 3",
        )
    replicas = default(ColorConfig, "replicas", production)
    colors = {}
    for color in COLORS:
        colour_section = _section(
            colors_raw, color, f"{at}.colors.{color}", {"replicas", "replicasBeforeRetire"}
        )
        image = _as_text(section.get(f"{color}Image"))
        if not isinstance(image, str) or not _TAG.fullmatch(image) or image == "latest":
            raise _fail(
                f"{at}.{color}Image",
                f"must be an image tag other than latest (got {image!r:.80})",
                f"pulumi config set --path cutover:{at}.{color}Image v1.0.0",
            )
        colors[color] = ColorConfig(
            image, _int(colour_section, "replicas", f"{at}.colors.{color}.replicas", replicas, 0, 100)
        )
    return colors


# --------------------------------------------------------------------------- services

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$")  # a DNS label short enough for AWS names
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^/[!-~]*$")  # no spaces or control characters
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_DB_USER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Environment variables the chart sets from the platform's contract: a service may not set them.
# (the chart's reserved names: its templates/_helpers.tpl, and any DATABASE_*)
PLATFORM_ENV = frozenset(
    {"PORT", "HOST", "COLOR", "APP_VERSION", "INSTANCE_ID", "DRAIN_SECONDS", "SHUTDOWN_TIMEOUT_SECONDS",
     "HTTP_KEEP_ALIVE_SECONDS", "TRUSTED_PROXIES", "LOG_FORMAT", "LOG_LEVEL", "RATE_LIMIT_PER_MINUTE",
     "CLUSTER_DISCOVERY", "CLUSTER_INTERVAL_SECONDS"}
)  # fmt: skip
PLATFORM_ENV_PREFIX = "DATABASE_"
# Chart values the program computes for every service: set them with the service's own keys.
COMPUTED_CHART_VALUES = frozenset(
    {"color", "image", "replicaCount", "containerPort", "health", "database", "env", "secretEnv", "aws",
     "drainSeconds", "shutdownTimeoutSeconds", "preStop", "drainBudget", "terminationGracePeriodSeconds",
     "nameOverride", "fullnameOverride", "autoscaling", "http", "trustedProxies", "podDisruptionBudget"}
)  # fmt: skip


def _as_text(value: Any) -> Any:
    """A scalar as `pulumi config set --path` stored it: a value of digits becomes a number and
    true/false a boolean there (a tag `4821937`, an env value `true`); anything else unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


# AWS's limits the services of one stack share (per listener: rules, certificates; defaults).
MAX_SERVICES = 25  # certificates per listener, the default one included (ALB quota, adjustable)
MAX_DOMAIN_LENGTH = 64  # an ACM certificate's domain name (its CN)


def _services(
    raw: Mapping[str, Any],
    environment: str,
    production: bool,
    registry: RegistryConfig,
    load_balancer: LoadBalancerConfig,
) -> tuple[ServiceConfig, ...]:
    """`cutover:services`: name -> the service's keys, at least one service."""
    listed = raw.get("services")
    if not isinstance(listed, dict) or not listed:
        raise _fail(
            "services",
            "must list at least one service (name -> its domain, images, port, health paths, ...)",
            "see docs/onboarding.md; e.g. pulumi config set --path cutover:services.api.domain api.example.com",
        )
    if len(listed) > MAX_SERVICES:
        raise _fail(
            "services",
            f"lists {len(listed)} services; one ALB listener takes {MAX_SERVICES} certificates (AWS default quota)",
            "split the services across stacks, or raise the quota and MAX_SERVICES together",
        )
    # By name: Pulumi hands object config over with its keys sorted, whatever the YAML order.
    services = [
        _service(name, listed[name], environment, production, registry, load_balancer)
        for name in sorted(listed)
    ]
    _check_distinct(services)
    return tuple(services)


def _default_service(raw: Mapping[str, Any], environment: str, services: tuple[ServiceConfig, ...]) -> str:
    """`loadBalancer.defaultService`: whose certificate is the HTTPS listeners' default (the
    one that cannot be detached). Default: the service of the single-service layout (its
    cutoverEnv is the environment: its certificate already is), else the first by name."""
    names = [s.name for s in services]
    chosen = _object(raw, "loadBalancer").get("defaultService")
    if chosen is None:
        legacy = [s.name for s in services if s.cutover_env == environment]
        return (legacy or names)[0]
    if chosen not in names:
        raise _fail(
            "loadBalancer.defaultService",
            f"must name one of the services ({', '.join(names)}; got {chosen!r:.60})",
            f"pulumi config set --path cutover:loadBalancer.defaultService {names[0]}",
        )
    return str(chosen)


def _check_distinct(services: list[ServiceConfig]) -> None:
    """What two services of a stack may not share: cutover environment, host names (a
    service's domain and its colors' `<color>.<domain>`: one listener rule would catch the
    other's traffic), target group names, host rule priorities and database users."""

    def claims(service: ServiceConfig) -> list[tuple[str, str, str]]:
        from cutover_infra.values import resource_name  # names are values.py's; no import cycle at load

        hosts = [service.domain, *(f"{color}.{service.domain}" for color in COLORS)]
        return [
            ("cutoverEnv", "the cutover environment", service.cutover_env),
            *(("domain", "the host name", host) for host in hosts),
            *(("cutoverEnv", "the target group name", resource_name(service.cutover_env, c)) for c in COLORS),
            ("rulePriority", "the host rule priority", str(service.rule_priority)),
            *(
                [("database.user", "the database user", service.database.user)]
                if service.database.mode == "provisioned"
                else []
            ),
        ]

    seen: dict[tuple[str, str], str] = {}
    for service in services:
        for key, what, value in claims(service):
            other = seen.get((what, value))
            if other is not None and other != service.name:
                raise _fail(
                    f"services.{service.name}.{key}",
                    f"gives {what} {value}, as service {other} does: each service needs its own",
                    f"pulumi config set --path cutover:services.{service.name}.{key} <another>",
                )
            seen[(what, value)] = service.name


def _service(
    name: str,
    section: Any,
    environment: str,
    production: bool,
    registry: RegistryConfig,
    load_balancer: LoadBalancerConfig,
) -> ServiceConfig:
    at = f"services.{name}"
    if not _SERVICE_NAME.fullmatch(name):
        raise _fail(
            at,
            "must be named with 2-20 lowercase letters, digits and hyphens (a DNS label; it names "
            "its namespaces, Helm releases and AWS resources)",
            "rename the entry, e.g. cutover:services.orders",
        )
    if not isinstance(section, dict):
        raise _fail(at, "must be an object", f"pulumi config set --path cutover:{at}.domain <domain>")
    unknown = sorted(set(section) - _SERVICE_KEYS)
    if unknown:
        raise _fail(
            f"{at}.{unknown[0]}",
            "is not a known key",
            f"use one of {', '.join(sorted(_SERVICE_KEYS))} (a typo?)",
        )
    cutover_env = section.get("cutoverEnv", f"{environment}-{name}")
    if not isinstance(cutover_env, str) or not re.fullmatch(r"[a-z][a-z0-9-]{1,30}", cutover_env):
        raise _fail(
            f"{at}.cutoverEnv",
            f"must be a short lowercase name (got {cutover_env!r:.80})",
            f"pulumi config set --path cutover:{at}.cutoverEnv {environment}-{name}",
        )
    domain = _string(section, "domain", f"{at}.domain", _DOMAIN, f"{name}.example.com")
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise _fail(
            f"{at}.domain",
            f"is {len(domain)} characters; an ACM certificate's name takes {MAX_DOMAIN_LENGTH}",
            f"pulumi config set --path cutover:{at}.domain <a shorter name>",
        )
    if registry.create and "imageRepository" in section:
        raise _fail(
            f"{at}.imageRepository",
            "is set while registry.create is true (the program creates each service's repository)",
            f"pulumi config rm --path cutover:{at}.imageRepository, or "
            "pulumi config set --path cutover:registry.create false",
        )
    repository = (
        ""
        if registry.create
        else _string(
            section,
            "imageRepository",
            f"{at}.imageRepository",
            None,
            f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{name}",
        )
    )
    keep_alive = _int(
        section, "keepAliveSeconds", f"{at}.keepAliveSeconds", load_balancer.app_keep_alive_seconds, 1, 4600
    )
    if keep_alive <= load_balancer.idle_timeout_seconds:
        raise _fail(
            f"{at}.keepAliveSeconds",
            f"({keep_alive}) must be longer than loadBalancer.idleTimeoutSeconds "
            f"({load_balancer.idle_timeout_seconds}), or the ALB reuses connections the service already "
            "closed (502s)",
            f"pulumi config set --path cutover:{at}.keepAliveSeconds {load_balancer.app_keep_alive_seconds}",
        )
    chart_values = _mapping(
        section,
        "chartValues",
        f"{at}.chartValues",
        " (chart values)",
        f"pulumi config set --path cutover:{at}.chartValues.<key> <value>",
    )
    computed = sorted(set(chart_values) & COMPUTED_CHART_VALUES)
    if computed:
        raise _fail(
            f"{at}.chartValues.{computed[0]}",
            "is computed by the program from the service's own keys",
            f"set it with cutover:{at} (port, health, database, env, secretEnv, autoscaling, colors, drain) instead",
        )
    colors = _colors(section, at, production)
    return ServiceConfig(
        name=name,
        cutover_env=cutover_env,
        domain=domain,
        image_repository=repository,
        colors=colors,
        drain=_drain(section, at),
        keep_alive_seconds=keep_alive,
        port=_int(section, "port", f"{at}.port", default(ServiceConfig, "port"), 1024, 65535),
        health=_health(section, at),
        database=_service_database(section, at),
        env=_service_env(section, at),
        secret_env=_secret_env(section, at),
        autoscaling=_autoscaling(section, at, colors),
        chart_values=dict(chart_values),
        chart=_chart(section, "chart", f"{at}.chart") if "chart" in section else "",
        rule_priority=_int(section, "rulePriority", f"{at}.rulePriority", rule_priority(name), 1, 50000),
    )


def rule_priority(service: str) -> int:
    """A service's host rule priority, from its name alone (adding or removing another service
    never moves it: AWS refuses a priority in use). Host rules never overlap, so the order is
    moot; two names meeting on one number are refused, and `rulePriority` settles it."""
    return 1 + int.from_bytes(hashlib.sha256(service.encode()).digest()[:4], "big") % 49999


# Charts are found relative to the repository holding the program (Pulumi.yaml's directory).
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def _chart(section: Mapping[str, Any], key: str, path: str) -> str:
    """A chart directory (relative to the repository, or absolute) holding a Chart.yaml."""
    value = section.get(key)
    where = Path(value) if isinstance(value, str) and value else None
    if where is not None and not where.is_absolute():
        where = REPOSITORY_ROOT / where
    try:
        found = where is not None and (where / "Chart.yaml").is_file()
    except OSError:  # a name too long for the file system, ...
        found = False
    if not found:
        raise _fail(
            path,
            f"must be the directory of a Helm chart meeting the service chart contract (got {value!r:.80})",
            f"pulumi config set --path cutover:{path} charts/<chart> (docs/onboarding.md)",
        )
    return str(value)


def _health(section: Mapping[str, Any], at: str) -> HealthPaths:
    found = _section(section, "health", f"{at}.health", {"live", "ready", "startup"})
    paths = {}
    for key in ("live", "ready", "startup"):
        value = found.get(key, default(HealthPaths, key))
        if not isinstance(value, str) or not _PATH.fullmatch(value) or len(value) > 255:  # Route53's limit
            raise _fail(
                f"{at}.health.{key}",
                f"must be a path starting with / without spaces (got {value!r:.80})",
                f"pulumi config set --path cutover:{at}.health.{key} /healthz",
            )
        paths[key] = value
    return HealthPaths(**paths)


def _service_database(section: Mapping[str, Any], at: str) -> ServiceDatabase:
    path = f"{at}.database"
    found = _section(section, "database", path, {"mode", "user", "secret", "key"})
    mode = found.get("mode", "none")
    if mode not in DATABASE_MODES:
        raise _fail(
            f"{path}.mode",
            f"must be one of {', '.join(DATABASE_MODES)} (got {mode!r:.80})",
            f"pulumi config set --path cutover:{path}.mode provisioned",
        )
    extra = {"none": {"user", "secret", "key"}, "provisioned": {"secret", "key"}, "secret": {"user"}}[mode]
    wrong = sorted(extra & set(found))
    if wrong:
        raise _fail(
            f"{path}.{wrong[0]}",
            f"does not apply to mode {mode}",
            f"pulumi config rm --path cutover:{path}.{wrong[0]}",
        )
    if mode == "provisioned":
        user = _string(found, "user", f"{path}.user", _DB_USER, "orders_app")
        return ServiceDatabase(mode, user=user)
    if mode == "secret":
        secret = _string(found, "secret", f"{path}.secret", _K8S_NAME, f"{at.split('.')[-1]}-database")
        key = found.get("key", "DATABASE_URL")
        if not isinstance(key, str) or not _SECRET_KEY.fullmatch(key):
            raise _fail(
                f"{path}.key",
                f"must be a Secret key (got {key!r:.80})",
                f"pulumi config set --path cutover:{path}.key DATABASE_URL",
            )
        return ServiceDatabase(mode, url=SecretRef(secret, key))
    return ServiceDatabase()


def _env_name(name: Any, path: str) -> str:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise _fail(
            path,
            "is not an environment variable name (letters, digits, _)",
            f"pulumi config rm --path cutover:{path}",
        )
    if name in PLATFORM_ENV or name.startswith(PLATFORM_ENV_PREFIX):
        raise _fail(
            path,
            "is set by the platform from the service's own keys (port, drain, database, ...)",
            f"pulumi config rm --path cutover:{path}",
        )
    return name


def _service_env(section: Mapping[str, Any], at: str) -> dict[str, str]:
    found = _mapping(
        section,
        "env",
        f"{at}.env",
        " (name -> value)",
        f"pulumi config set --path cutover:{at}.env.GREETING_STYLE plain",
    )
    env = {}
    for name, given in found.items():
        _env_name(name, f"{at}.env.{name}")
        value = _as_text(given)
        if not isinstance(value, str | float):
            raise _fail(
                f"{at}.env.{name}",
                f"must be a string (got {value!r:.80})",
                f"pulumi config set --path cutover:{at}.env.{name} <value>",
            )
        env[name] = str(value)
    return env


def _secret_env(section: Mapping[str, Any], at: str) -> dict[str, SecretRef]:
    found = _mapping(
        section,
        "secretEnv",
        f"{at}.secretEnv",
        " (name -> {secret, key})",
        f"pulumi config set --path cutover:{at}.secretEnv.API_TOKEN.secret <secret>",
    )
    refs = {}
    for name in found:
        path = f"{at}.secretEnv.{name}"
        _env_name(name, path)
        if name in (section.get("env") or {}):
            raise _fail(path, "is also in env", f"keep one: pulumi config rm --path cutover:{at}.env.{name}")
        item = _section(found, name, path, {"secret", "key"})
        refs[name] = SecretRef(
            _string(item, "secret", f"{path}.secret", _K8S_NAME, "api-token"),
            _string(item, "key", f"{path}.key", _SECRET_KEY, "token"),
        )
    return refs


def _autoscaling(
    section: Mapping[str, Any], at: str, colors: Mapping[str, ColorConfig]
) -> Autoscaling | None:
    """`autoscaling`: up to maxReplicas per color, from the color's replicas (the minimum)."""
    found_value = section.get("autoscaling")
    if found_value is None or found_value is False:  # unset, null or false: off (`in` would take 0 too)
        return None
    path = f"{at}.autoscaling"
    if not isinstance(section["autoscaling"], dict):
        raise _fail(
            path,
            f"must be an object (maxReplicas, targetCpuPercent) or false (got {section['autoscaling']!r:.60})",
            f"pulumi config set --path cutover:{path}.maxReplicas 10",
        )
    found = _section(section, "autoscaling", path, {"maxReplicas", "targetCpuPercent"})
    low = max(2, *(c.replicas for c in colors.values()))
    high = _int(found, "maxReplicas", f"{path}.maxReplicas", max(low, 10), low, 1000)
    return Autoscaling(high, _int(found, "targetCpuPercent", f"{path}.targetCpuPercent", 70, 10, 100))


def _traffic(raw: Mapping[str, Any]) -> TrafficConfig:
    """`cutover:traffic`: the first weights, the records' TTL and the ALB's stickiness."""
    tr = _object(raw, "traffic")
    weights = tr.get("initialWeights", default(TrafficConfig, "initial_weights"))
    if (
        not isinstance(weights, dict)
        or set(weights) != set(COLORS)
        or not all(isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= 100 for w in weights.values())
        or sum(weights.values()) != 100
    ):
        raise _fail(
            "traffic.initialWeights",
            f"must give blue and green weights 0-100 summing to 100 (got {weights!r:.80})",
            "pulumi config set --path cutover:traffic.initialWeights.blue 100",
        )
    return TrafficConfig(
        dict(weights),
        _int(tr, "ttl", "traffic.ttl", default(TrafficConfig, "ttl"), 5, 86400),
        _int(
            tr,
            "stickinessSeconds",
            "traffic.stickinessSeconds",
            default(TrafficConfig, "stickiness_seconds"),
            1,
            604800,
        ),
    )


def _drain(section: Mapping[str, Any], at: str) -> DrainBudget:
    """A service's `drain` (DrainConfig's keys) checked into the tightest valid DrainBudget."""
    path = f"{at}.drain"
    dr = _section(section, "drain", path, _KNOWN["drain"])
    try:
        return budget_for_deregistration(
            _int(
                dr,
                "deregistrationDelaySeconds",
                f"{path}.deregistrationDelaySeconds",
                default(DrainConfig, "deregistration_delay_seconds"),
                0,
                3600,
            ),
            _number(
                dr, "drainSeconds", f"{path}.drainSeconds", default(DrainConfig, "drain_seconds"), 0, 600
            ),
            _number(
                dr,
                "shutdownTimeoutSeconds",
                f"{path}.shutdownTimeoutSeconds",
                default(DrainConfig, "shutdown_timeout_seconds"),
                0,
                3600,
            ),
            _int(
                dr, "marginSeconds", f"{path}.marginSeconds", default(DrainConfig, "margin_seconds"), 0, 600
            ),
        )
    except DrainBudgetError as exc:
        raise _fail(path, str(exc), f"adjust cutover:{path}") from None


def _registry(raw: Mapping[str, Any]) -> RegistryConfig:
    """`cutover:registry`: whether the program makes an ECR repository per service (the
    default when no service names its imageRepository)."""
    section = _object(raw, "registry")
    listed = raw.get("services")
    services: dict[str, Any] = listed if isinstance(listed, dict) else {}
    given = any(isinstance(v, dict) and "imageRepository" in v for v in services.values())
    create = _bool(section, "create", "registry.create", not given)
    keep = _int(
        section, "keepImages", "registry.keepImages", default(RegistryConfig, "keep_images"), 10, 10000
    )
    return RegistryConfig(create, keep)


# An ALB needs a subnet of /27 or larger (with 8 free addresses) in each of its zones.
ALB_SUBNET_PREFIX = 27


def _check_network_cidr(cidr: str, zones: int) -> None:
    """Refuse a VPC CIDR whose carved subnets (components/network.py) cannot hold the ALBs."""
    problem = network_cidr_problem(cidr, zones)
    if problem is not None:
        raise _fail(
            "network.cidr",
            problem,
            f"pulumi config set --path cutover:network.cidr {fitting_cidr(cidr, zones)}",
        )


def network_cidr_problem(cidr: str, zones: int) -> str | None:
    """Why the Network component cannot carve `zones` private + public subnets out of `cidr`
    with public (ALB) subnets of /27 or larger, or None when it can."""
    from cutover_infra.components.network import subnet_cidrs

    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError:
        return f"must be an IPv4 CIDR such as 10.20.0.0/16 (got {cidr!r:.80})"
    if not 16 <= network.prefixlen <= 28:
        return f"must be a /16 to /28 block, what a VPC takes (got {cidr})"
    try:
        private, public = subnet_cidrs(cidr, zones)
    except ValueError:  # too small to split at all
        private, public = [], []
    subnets = [ipaddress.IPv4Network(s) for s in private + public]
    if (
        len(private) < zones
        or len(public) < zones
        or any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])
    ):
        return f"is too small for {zones} private and {zones} public subnets (got {cidr})"
    smallest = max(ipaddress.IPv4Network(s).prefixlen for s in public)
    if smallest > ALB_SUBNET_PREFIX:
        return (
            f"leaves /{smallest} public subnets for {zones} zones; ALBs need /{ALB_SUBNET_PREFIX} "
            f"or larger (got {cidr})"
        )
    return None


def fitting_cidr(cidr: str, zones: int) -> str:
    """The smallest block around `cidr`'s address that fits (10.20.0.0/16 if none does)."""
    try:
        network = ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        return str(default(NetworkConfig, "cidr"))
    if network.prefixlen < 16:
        network = next(network.subnets(new_prefix=16))
    for prefix in range(min(network.prefixlen, 28), 15, -1):
        candidate = str(network.supernet(new_prefix=prefix))
        if network_cidr_problem(candidate, zones) is None:
            return candidate
    return str(default(NetworkConfig, "cidr"))


def _vpc_cidr(cl: Mapping[str, Any]) -> str:
    """An existing cluster's VPC CIDR (the chart's trusted proxies and, by default, its
    Postgres egress rule): a canonical IPv4 block, refused here rather than by Helm later."""
    value = _string(cl, "vpcCidr", "cluster.vpcCidr", None, "10.10.0.0/16")
    try:
        if "/" not in value:
            raise ValueError(value)
        return str(ipaddress.IPv4Network(value))
    except ValueError:
        raise _fail(
            "cluster.vpcCidr",
            f"must be the VPC's IPv4 CIDR such as 10.10.0.0/16 (got {value!r:.80})",
            "pulumi config set --path cutover:cluster.vpcCidr <the VPC's CIDR>",
        ) from None


def _database_cidr(
    section: Mapping[str, Any], network: NetworkConfig, existing: ExistingCluster | None
) -> str:
    """`database.cidr`, else the narrowest block holding the private subnets the program
    carves (the database's subnet group), else an existing cluster's VPC CIDR."""
    from cutover_infra.components.network import subnet_cidrs

    if "cidr" in section:
        value = section["cidr"]
        try:
            if "/" not in str(value):
                raise ValueError(value)
            return str(ipaddress.IPv4Network(str(value)))
        except ValueError:
            raise _fail(
                "database.cidr",
                f"must be an IPv4 CIDR such as 10.20.0.0/18 (got {value!r:.80})",
                "pulumi config set --path cutover:database.cidr <the database subnets' CIDR>",
            ) from None
    if existing is not None:
        return existing.vpc_cidr
    private, _public = subnet_cidrs(network.cidr, len(network.availability_zones))
    return covering_cidr(private)


def covering_cidr(cidrs: list[str]) -> str:
    """The smallest single IPv4 block containing every one of `cidrs`."""
    blocks = [ipaddress.IPv4Network(c) for c in cidrs]
    block = blocks[0]
    while not all(b.subnet_of(block) for b in blocks):
        block = block.supernet()
    return str(block)


MAX_ACCESS_LOG_DAYS = 3653  # ten years of ALB access logs at most


def _load_balancer(raw: Mapping[str, Any]) -> LoadBalancerConfig:
    """`cutover:loadBalancer`; the app's keep-alive defaults to outlive the idle timeout."""
    section = _object(raw, "loadBalancer")
    idle = _int(
        section,
        "idleTimeoutSeconds",
        "loadBalancer.idleTimeoutSeconds",
        default(LoadBalancerConfig, "idle_timeout_seconds"),
        1,
        4000,
    )
    default_keep_alive = max(
        default(LoadBalancerConfig, "app_keep_alive_seconds"), idle + KEEP_ALIVE_OVER_IDLE_SECONDS
    )
    keep_alive = _int(
        section, "appKeepAliveSeconds", "loadBalancer.appKeepAliveSeconds", default_keep_alive, 1, 4600
    )
    if keep_alive <= idle:
        raise _fail(
            "loadBalancer.appKeepAliveSeconds",
            f"({keep_alive}) must be longer than loadBalancer.idleTimeoutSeconds ({idle}), or the ALB "
            "reuses connections the app already closed (502s)",
            f"pulumi config set --path cutover:loadBalancer.appKeepAliveSeconds {default_keep_alive}",
        )
    retention = _int(
        section,
        "accessLogRetentionDays",
        "loadBalancer.accessLogRetentionDays",
        default(LoadBalancerConfig, "access_log_retention_days"),
        1,
        MAX_ACCESS_LOG_DAYS,
    )
    return LoadBalancerConfig(idle, keep_alive, retention)


def load() -> StackConfig:
    """Read the running stack's config (inside a Pulumi program)."""

    import pulumi
    from pulumi.runtime.config import is_config_secret

    config = pulumi.Config("cutover")
    raw: dict[str, Any] = {}
    for key in (*_TOP, *_MOVED_TO_SERVICES):
        value = config.get(key)
        if value is None:
            continue
        if key in _KNOWN or key == "services":
            try:
                raw[key] = json.loads(value)
            except json.JSONDecodeError:
                raise _fail(
                    key, "must be an object", f"pulumi config set --path cutover:{key}.<field> <value>"
                ) from None
        elif key in ("protect", "teardown"):
            raw[key] = value.lower() == "true" if value.lower() in ("true", "false") else value
        else:
            raw[key] = value
    return parse(
        raw,
        stack=pulumi.get_stack(),
        region=pulumi.Config("aws").get("region"),
        is_secret=lambda key: is_config_secret(f"cutover:{key}"),
    )
