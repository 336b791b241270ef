"""Stack config -> frozen dataclasses, validated before any resource is declared.

Every key lives in the `cutover` namespace (`pulumi config set cutover:<key> ...`), except
the region (`aws:region`). A bad stack raises ConfigError: one line naming the key, what is
wrong, and how to fix it. Sensitive values (the kubeconfig of an existing cluster) must be
Pulumi secrets (`pulumi config set --secret`); plaintext is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cutover_infra.budget import DrainBudget, DrainBudgetError, budget_for_deregistration

COLORS = ("blue", "green")


class ConfigError(ValueError):
    """The stack's config is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str = "10.20.0.0/16"
    availability_zones: tuple[str, ...] = ()
    nat_gateway_per_az: bool = False


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
class ClusterConfig:
    create: bool = True
    version: str = "1.31"
    node_instance_type: str = "m6i.large"
    node_min: int = 2
    node_max: int = 4
    node_desired: int = 2
    existing: ExistingCluster | None = None


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str = "db.t4g.medium"
    allocated_storage: int = 20
    max_allocated_storage: int = 100
    multi_az: bool = False
    backup_retention_days: int = 7
    deletion_protection: bool = False
    engine_version: str = "16"


@dataclass(frozen=True)
class ColorConfig:
    image: str
    replicas: int


@dataclass(frozen=True)
class TrafficConfig:
    initial_weights: Mapping[str, int] = field(default_factory=lambda: {"blue": 100, "green": 0})
    ttl: int = 60
    stickiness_seconds: int = 3600


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

    @property
    def is_production(self) -> bool:
        return self.environment == "prod"


# --------------------------------------------------------------------------- parsing

_KNOWN = {
    "network": {"cidr", "availabilityZones", "natGatewayPerAz"},
    "cluster": {
        "create", "version", "nodeInstanceType", "nodeMin", "nodeMax", "nodeDesired", "name", "oidcProviderArn",
        "oidcIssuerUrl", "vpcId", "publicSubnetIds", "privateSubnetIds", "nodeSecurityGroupId", "vpcCidr",
    },
    "database": {
        "instanceClass", "allocatedStorage", "maxAllocatedStorage", "multiAz", "backupRetentionDays",
        "deletionProtection", "engineVersion",
    },
    "traffic": {"initialWeights", "ttl", "stickinessSeconds"},
    "drain": {"deregistrationDelaySeconds", "drainSeconds", "shutdownTimeoutSeconds", "marginSeconds"},
}  # fmt: skip
_TOP = {
    "environment", "domain", "hostedZoneId", "imageRepository", "blueImage", "greenImage", "network",
    "cluster", "database", "colors", "traffic", "drain", "protect", "kubeconfig",
}  # fmt: skip

_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{6,31}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
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


def parse(
    raw: Mapping[str, Any], *, stack: str, region: str | None, is_secret: Callable[[str], bool]
) -> StackConfig:
    """Validate raw config (the `cutover:` keys, objects already decoded) into a StackConfig."""
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise _fail(unknown[0], "is not a known key", f"use one of {', '.join(sorted(_TOP))} (a typo?)")
    if not region:
        raise ConfigError("aws:region is not set; fix: pulumi config set aws:region eu-west-1")
    environment = str(raw.get("environment") or stack)
    if environment not in ("dev", "staging", "prod") and not re.match(r"^[a-z][a-z0-9-]{1,20}$", environment):
        raise _fail(
            "environment",
            f"must be a short lowercase name (got {environment!r})",
            "pulumi config set cutover:environment dev",
        )
    production = environment == "prod"

    domain = _string(raw, "domain", "domain", _DOMAIN, "ledger.example.com")
    zone = _string(raw, "hostedZoneId", "hostedZoneId", _ZONE_ID, "Z0123456789ABCDEFGHIJ")
    repository = _string(
        raw, "imageRepository", "imageRepository", None, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ledger"
    )

    net = _object(raw, "network")
    cidr = str(net.get("cidr", NetworkConfig.cidr))
    try:
        if ipaddress.ip_network(cidr).prefixlen > 20:
            raise ValueError
    except ValueError:
        raise _fail(
            "network.cidr",
            f"must be an IPv4 CIDR of /20 or larger (got {cidr!r})",
            "pulumi config set --path cutover:network.cidr 10.20.0.0/16",
        ) from None
    zones = tuple(net.get("availabilityZones") or (f"{region}a", f"{region}b", f"{region}c"))
    if len(zones) < 2 or len(set(zones)) != len(zones) or not all(z.startswith(region) for z in zones):
        raise _fail(
            "network.availabilityZones",
            f"must list at least two distinct zones of {region} (got {list(zones)})",
            f"pulumi config set --path 'cutover:network.availabilityZones[1]' {region}b",
        )
    network = NetworkConfig(cidr, zones, _bool(net, "natGatewayPerAz", "network.natGatewayPerAz", production))

    cl = _object(raw, "cluster")
    create = _bool(cl, "create", "cluster.create", True)
    existing = None
    if not create:
        if "kubeconfig" not in raw:
            raise _fail(
                "kubeconfig",
                "is required when cluster.create is false",
                'pulumi config set --secret cutover:kubeconfig "$(cat kubeconfig.yaml)"',
            )
        existing = ExistingCluster(
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
            vpc_cidr=_string(cl, "vpcCidr", "cluster.vpcCidr"),
        )
    if "kubeconfig" in raw and not is_secret("kubeconfig"):
        raise _fail(
            "kubeconfig",
            "is stored in plaintext",
            'pulumi config set --secret cutover:kubeconfig "$(cat kubeconfig.yaml)"',
        )
    node_min = _int(cl, "nodeMin", "cluster.nodeMin", 2, 1, 100)
    node_max = _int(cl, "nodeMax", "cluster.nodeMax", max(4, node_min), node_min, 200)
    cluster = ClusterConfig(
        create=create,
        version=str(cl.get("version", ClusterConfig.version)),
        node_instance_type=str(cl.get("nodeInstanceType", ClusterConfig.node_instance_type)),
        node_min=node_min,
        node_max=node_max,
        node_desired=_int(cl, "nodeDesired", "cluster.nodeDesired", node_min, node_min, node_max),
        existing=existing,
    )

    db = _object(raw, "database")
    instance_class = str(db.get("instanceClass", DatabaseConfig.instance_class))
    if not _INSTANCE_CLASS.match(instance_class):
        raise _fail(
            "database.instanceClass",
            f"must look like db.<family>.<size> (got {instance_class!r})",
            "pulumi config set --path cutover:database.instanceClass db.r6g.large",
        )
    allocated = _int(db, "allocatedStorage", "database.allocatedStorage", 20, 20, 65536)
    database = DatabaseConfig(
        instance_class=instance_class,
        allocated_storage=allocated,
        max_allocated_storage=_int(
            db, "maxAllocatedStorage", "database.maxAllocatedStorage", max(100, allocated), allocated, 65536
        ),
        multi_az=_bool(db, "multiAz", "database.multiAz", production),
        backup_retention_days=_int(
            db, "backupRetentionDays", "database.backupRetentionDays", 14 if production else 7, 1, 35
        ),
        deletion_protection=_bool(db, "deletionProtection", "database.deletionProtection", production),
        engine_version=str(db.get("engineVersion", DatabaseConfig.engine_version)),
    )
    if production and not (database.deletion_protection and database.multi_az):
        raise _fail(
            "database",
            "must have deletionProtection and multiAz in prod",
            "pulumi config set --path cutover:database.deletionProtection true (and multiAz)",
        )

    colors_raw = raw.get("colors") or {}
    if not isinstance(colors_raw, dict) or set(colors_raw) - set(COLORS):
        raise _fail(
            "colors",
            "must be an object with blue and/or green",
            "pulumi config set --path cutover:colors.blue.replicas 3",
        )
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
            image, _int(section, "replicas", f"colors.{color}.replicas", 3 if production else 2, 0, 100)
        )

    tr = _object(raw, "traffic")
    weights = tr.get("initialWeights", {"blue": 100, "green": 0})
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
    traffic = TrafficConfig(
        dict(weights),
        _int(tr, "ttl", "traffic.ttl", 60, 5, 86400),
        _int(tr, "stickinessSeconds", "traffic.stickinessSeconds", 3600, 1, 604800),
    )

    dr = _object(raw, "drain")
    try:
        drain = budget_for_deregistration(
            _int(dr, "deregistrationDelaySeconds", "drain.deregistrationDelaySeconds", 10, 0, 3600),
            _number(dr, "drainSeconds", "drain.drainSeconds", 5, 0, 600),
            _number(dr, "shutdownTimeoutSeconds", "drain.shutdownTimeoutSeconds", 20, 0, 3600),
            _int(dr, "marginSeconds", "drain.marginSeconds", 5, 0, 600),
        )
    except DrainBudgetError as exc:
        raise _fail("drain", str(exc), "adjust cutover:drain") from None

    return StackConfig(
        environment=environment,
        region=region,
        domain=domain,
        hosted_zone_id=zone,
        image_repository=repository,
        network=network,
        cluster=cluster,
        database=database,
        colors=colors,
        traffic=traffic,
        drain=drain,
        protect=_bool(raw, "protect", "protect", production),
    )


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
        elif key in ("protect",):
            raw[key] = value.lower() == "true" if value.lower() in ("true", "false") else value
        else:
            raw[key] = value
    return parse(
        raw,
        stack=pulumi.get_stack(),
        region=pulumi.Config("aws").get("region"),
        is_secret=lambda key: is_config_secret(f"cutover:{key}"),
    )
