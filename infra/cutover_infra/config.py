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

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
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
class StackConfig:
    environment: str
    region: str
    domain: str
    hosted_zone_id: str
    image_repository: str
    network: NetworkConfig
    cluster: ClusterConfig
    database: DatabaseConfig
    colors: Mapping[str, ColorConfig]
    traffic: TrafficConfig
    drain: DrainBudget
    protect: bool
    tier: str = "non-production"
    teardown: bool = False
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    @property
    def is_production(self) -> bool:
        return self.tier == "production"


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
        "instanceClass", "allocatedStorage", "maxAllocatedStorage", "multiAz", "backupRetentionDays",
        "deletionProtection", "engineVersion", "cidr",
    },
    "loadBalancer": {"idleTimeoutSeconds", "appKeepAliveSeconds", "accessLogRetentionDays"},
    "registry": {"create", "keepImages"},
    "traffic": {"initialWeights", "ttl", "stickinessSeconds"},
    "drain": {"deregistrationDelaySeconds", "drainSeconds", "shutdownTimeoutSeconds", "marginSeconds"},
}  # fmt: skip
_TOP = {
    "environment", "domain", "hostedZoneId", "imageRepository", "blueImage", "greenImage", "network",
    "cluster", "database", "colors", "traffic", "drain", "protect", "kubeconfig",
    "tier", "teardown", "loadBalancer", "registry",
}  # fmt: skip

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


def _int(section: dict[str, Any], key: str, path: str, default: int, low: int, high: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(
            path,
            f"must be a whole number from {low} to {high} (got {value!r})",
            f"pulumi config set --path cutover:{path} <n>",
        )
    return value


def _number(section: dict[str, Any], key: str, path: str, default: float, low: float, high: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(
            path,
            f"must be a number from {low:g} to {high:g} (got {value!r})",
            f"pulumi config set --path cutover:{path} <n>",
        )
    return float(value)


def _bool(section: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise _fail(
            path, f"must be true or false (got {value!r})", f"pulumi config set --path cutover:{path} true"
        )
    return value


def _string(
    section: Mapping[str, Any], key: str, path: str, pattern: re.Pattern[str] | None = None, example: str = ""
) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
        raise _fail(
            path,
            f"is missing or invalid (got {value!r})",
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
            f'must be a Kubernetes minor version such as "{version}" (got {value!r})',
            f"pulumi config set --path cutover:cluster.version {version}",
        )
    return value


def _support_type(cl: Mapping[str, Any]) -> str:
    value = cl.get("supportType", default(ClusterConfig, "support_type"))
    if value not in ("STANDARD", "EXTENDED"):
        raise _fail(
            "cluster.supportType",
            f"must be STANDARD or EXTENDED (got {value!r})",
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
                    f"must be an IAM role ARN arn:aws:iam::<12 digits>:role/<name> (got {role!r})",
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
            f"(got {value!r})",
            f"pulumi config set --path cutover:{path} {above[0] if above else fallback}",
        )
    return int(value)


def public_access_cidr_problem(cidr: object) -> tuple[str, str] | None:
    """Why `cidr` cannot be an entry of the EKS public endpoint's allow list, with the value
    to use instead (or None when it can). The clusters are IPv4: EKS takes IPv6 ranges only
    for IPv6 clusters."""
    if not isinstance(cidr, str) or "/" not in cidr:
        return f"must be an IPv4 CIDR such as 203.0.113.0/24 (got {cidr!r})", "203.0.113.0/24"
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return f"must be an IPv4 CIDR such as 203.0.113.0/24 (got {cidr!r})", "203.0.113.0/24"
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
        raise _fail("cluster.publicAccessCidrs", f"must be a list of CIDRs (got {cidrs!r})", _SET_CIDR)
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

    domain = _string(raw, "domain", "domain", _DOMAIN, "ledger.example.com")
    zone = _string(raw, "hostedZoneId", "hostedZoneId", _ZONE_ID, "Z0123456789ABCDEFGHIJ")
    registry, repository = _registry(raw)
    network = _network(raw, region, production)
    cluster = _cluster(raw, is_secret)
    return StackConfig(
        environment=environment,
        region=region,
        domain=domain,
        hosted_zone_id=zone,
        image_repository=repository,
        network=network,
        cluster=cluster,
        database=_database(
            raw, network, cluster.existing, production=production, protect=protect, teardown=teardown
        ),
        colors=_colors(raw, production),
        traffic=_traffic(raw),
        drain=_drain(raw),
        protect=protect,
        tier=tier,
        teardown=teardown,
        load_balancer=_load_balancer(raw),
        registry=registry,
    )


def _environment(raw: Mapping[str, Any], stack: str) -> str:
    """`cutover:environment`, default the stack's name."""
    environment = str(raw.get("environment") or stack)
    if environment not in ("dev", "staging", "prod") and not re.match(r"^[a-z][a-z0-9-]{1,20}$", environment):
        raise _fail(
            "environment",
            f"must be a short lowercase name (got {environment!r})",
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
            f"must be production or non-production (got {tier!r})",
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
            f"must list at least two distinct zones of {region} (got {listed!r})",
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
            f"must look like db.<family>.<size> (got {instance_class!r})",
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
    database = DatabaseConfig(
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


def _colors(raw: Mapping[str, Any], production: bool) -> dict[str, ColorConfig]:
    """`cutover:colors` (replicas per color) and `cutover:<color>Image`."""
    colors_raw = raw.get("colors") or {}
    if not isinstance(colors_raw, dict) or set(colors_raw) - set(COLORS):
        raise _fail(
            "colors",
            "must be an object with blue and/or green",
            "pulumi config set --path cutover:colors.blue.replicas 3",
        )
    replicas = default(ColorConfig, "replicas", production)
    colors = {}
    for color in COLORS:
        section = colors_raw.get(color) or {}
        image = raw.get(f"{color}Image")
        if not isinstance(image, str) or not _TAG.match(image) or image == "latest":
            raise _fail(
                f"{color}Image",
                f"must be an image tag other than latest (got {image!r})",
                f"pulumi config set cutover:{color}Image v1.0.0",
            )
        colors[color] = ColorConfig(
            image, _int(section, "replicas", f"colors.{color}.replicas", replicas, 0, 100)
        )
    return colors


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
            f"must give blue and green weights 0-100 summing to 100 (got {weights!r})",
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


def _drain(raw: Mapping[str, Any]) -> DrainBudget:
    """`cutover:drain` (DrainConfig's keys) checked into the tightest valid DrainBudget."""
    dr = _object(raw, "drain")
    try:
        return budget_for_deregistration(
            _int(
                dr,
                "deregistrationDelaySeconds",
                "drain.deregistrationDelaySeconds",
                default(DrainConfig, "deregistration_delay_seconds"),
                0,
                3600,
            ),
            _number(dr, "drainSeconds", "drain.drainSeconds", default(DrainConfig, "drain_seconds"), 0, 600),
            _number(
                dr,
                "shutdownTimeoutSeconds",
                "drain.shutdownTimeoutSeconds",
                default(DrainConfig, "shutdown_timeout_seconds"),
                0,
                3600,
            ),
            _int(dr, "marginSeconds", "drain.marginSeconds", default(DrainConfig, "margin_seconds"), 0, 600),
        )
    except DrainBudgetError as exc:
        raise _fail("drain", str(exc), "adjust cutover:drain") from None


def _registry(raw: Mapping[str, Any]) -> tuple[RegistryConfig, str]:
    """The ECR repository the program creates (imageRepository omitted), or the given one."""
    section = _object(raw, "registry")
    create = _bool(section, "create", "registry.create", "imageRepository" not in raw)
    keep = _int(
        section, "keepImages", "registry.keepImages", default(RegistryConfig, "keep_images"), 10, 10000
    )
    if create and "imageRepository" in raw:
        raise _fail(
            "imageRepository",
            "is set while registry.create is true (the program creates the repository)",
            "pulumi config rm cutover:imageRepository, or pulumi config set --path cutover:registry.create false",
        )
    if create:
        return RegistryConfig(True, keep), ""
    repository = _string(
        raw, "imageRepository", "imageRepository", None, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ledger"
    )
    return RegistryConfig(False, keep), repository


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
        return f"must be an IPv4 CIDR such as 10.20.0.0/16 (got {cidr!r})"
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
            f"must be the VPC's IPv4 CIDR such as 10.10.0.0/16 (got {value!r})",
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
                f"must be an IPv4 CIDR such as 10.20.0.0/18 (got {value!r})",
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
    import json

    import pulumi
    from pulumi.runtime.config import is_config_secret

    config = pulumi.Config("cutover")
    raw: dict[str, Any] = {}
    for key in _TOP:
        value = config.get(key)
        if value is None:
            continue
        if key in _KNOWN or key == "colors":
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
