"""Bad stacks fail before any resource is declared, with the key and the fix."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cutover_infra import config as cfg
from cutover_infra.budget import budget_for_deregistration
from cutover_infra.config import ConfigError, StackConfig, parse

from tests.infra.harness import Run, run_program, services_with, stack_config


def mutated(stack: str, **changes: object) -> tuple[dict[str, str], list[str]]:
    config, secrets = stack_config(stack)
    for key, value in changes.items():
        full = key if ":" in key else f"cutover:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value if isinstance(value, str) else json.dumps(value)
    return config, secrets


def prod_database(**fields: object) -> dict[str, object]:
    base = json.loads(stack_config("prod")[0]["cutover:database"])
    return {**base, **fields}


def prod_ledger(**fields: object) -> dict[str, object]:
    """prod's services with ledger's entry changed (a field None: removed)."""
    return services_with("prod", "ledger", **fields)


BAD_STACKS = [
    ("missing domain", "prod", {"services": prod_ledger(domain=None)}, "cutover:services.ledger.domain"),
    ("a key of the single-service layout", "prod", {"domain": "ledger.example.com"}, "cutover:domain"),
    ("no services", "prod", {"services": {}}, "cutover:services"),
    ("a service named badly", "prod", {"services": {"Ledger!": {}}}, "cutover:services.Ledger!"),
    ("no chart", "prod", {"chart": None}, "cutover:chart"),
    ("a chart that is not one", "prod", {"chart": "docs"}, "cutover:chart"),
    ("bad zone id", "prod", {"hostedZoneId": "example.com"}, "cutover:hostedZoneId"),
    (
        "typo in a key",
        "prod",
        {"database": {"instanceClas": "db.r6g.large"}},
        "cutover:database.instanceClas",
    ),
    (
        "bad instance class",
        "prod",
        {"database": prod_database(instanceClass="large")},
        "cutover:database.instanceClass",
    ),
    (
        "prod without deletion protection",
        "prod",
        {"database": prod_database(deletionProtection=False)},
        "cutover:database",
    ),
    (
        "weights not summing to 100",
        "prod",
        {"traffic": {"initialWeights": {"blue": 100, "green": 10}}},
        "cutover:traffic.initialWeights",
    ),
    (
        "latest tag",
        "prod",
        {"services": prod_ledger(greenImage="latest")},
        "cutover:services.ledger.greenImage",
    ),
    (
        "zone of another region",
        "prod",
        {"network": {"availabilityZones": ["us-east-1a", "us-east-1b"]}},
        "cutover:network.availabilityZones",
    ),
    ("tiny VPC", "staging", {"network": {"cidr": "10.0.0.0/24"}}, "cutover:network.cidr"),
    (
        "negative drain",
        "prod",
        {"services": prod_ledger(drain={"drainSeconds": -1})},
        "cutover:services.ledger.drain.drainSeconds",
    ),
    ("no region", "prod", {"aws:region": None}, "aws:region"),
    ("existing cluster without kubeconfig", "dev", {"kubeconfig": None}, "cutover:kubeconfig"),
    ("VPC with /28 public subnets", "staging", {"network": {"cidr": "10.0.0.0/20"}}, "cutover:network.cidr"),
    ("VPC larger than AWS allows", "staging", {"network": {"cidr": "10.0.0.0/8"}}, "cutover:network.cidr"),
    (
        "app keep-alive not above the ALB idle timeout",
        "prod",
        {"loadBalancer": {"idleTimeoutSeconds": 90, "appKeepAliveSeconds": 90}},
        "cutover:loadBalancer.appKeepAliveSeconds",
    ),
    (
        "ALB idle timeout out of range",
        "prod",
        {"loadBalancer": {"idleTimeoutSeconds": 0}},
        "cutover:loadBalancer.idleTimeoutSeconds",
    ),
    ("unknown tier", "prod", {"tier": "gold"}, "cutover:tier"),
    ("teardown not a bool", "prod", {"teardown": "soon"}, "cutover:teardown"),
    (
        "a repository and one to create",
        "prod",
        {"registry": {"create": True}},
        "cutover:services.ledger.imageRepository",
    ),
    (
        "a digest that is not sha256",
        "prod",
        {"services": prod_ledger(greenImage="v1@sha256:abc")},
        "cutover:services.ledger.greenImage",
    ),
    (
        "database CIDR without a prefix",
        "prod",
        {"database": prod_database(cidr="10.20.0.0")},
        "cutover:database.cidr",
    ),
]


@pytest.mark.parametrize(("what", "stack", "changes", "key"), BAD_STACKS, ids=[b[0] for b in BAD_STACKS])
def test_a_bad_stack_names_the_key_and_declares_nothing(
    what: str, stack: str, changes: dict[str, object], key: str
) -> None:
    config, secrets = mutated(stack, **changes)
    run = Run()
    with pytest.raises(Exception) as error:
        run_program(stack, config, secrets, run=run)
    message = str(error.value)
    assert key in message and "fix:" in message, message
    assert run.registered == []  # it failed before declaring anything


def test_plaintext_kubeconfig_is_refused() -> None:
    config, _ = stack_config("dev")
    with pytest.raises(
        Exception, match=r"cutover:kubeconfig is stored in plaintext; fix: pulumi config set --secret"
    ):
        run_program("dev", config, secret_keys=[])


def test_nothing_is_declared_when_the_config_is_bad() -> None:
    config, secrets = mutated("prod", services=prod_ledger(domain="not a domain"))
    run = Run()
    with pytest.raises(Exception, match=r"cutover:services\.ledger\.domain"):
        run_program("prod", config, secrets, run=run)
    assert run.registered == [] and run.inputs == {}


def test_defaults_follow_the_environment() -> None:
    common = {
        "hostedZoneId": "Z0PRODEXAMPLE1234",
        "chart": "charts/ledger",
        "services": {
            "api": {
                "domain": "api.example.com",
                "imageRepository": "r",
                "blueImage": "v1",
                "greenImage": "v1",
            }
        },
        # a created cluster names who may reach it, and where its API endpoint is public to
        "cluster": {
            "access": {"admins": ["arn:aws:iam::123456789012:role/admin"]},
            "publicAccessCidrs": ["203.0.113.0/24"],
        },
    }
    dev = parse(common, stack="dev", region="eu-west-1", is_secret=lambda _k: False)
    assert (dev.database.multi_az, dev.database.deletion_protection, dev.protect) == (False, False, False)
    prod = parse(common, stack="prod", region="eu-west-1", is_secret=lambda _k: False)
    assert (prod.database.multi_az, prod.database.deletion_protection) == (True, True)
    with pytest.raises(ConfigError, match="must have deletionProtection and multiAz in prod"):
        parse(
            {**common, "database": {"multiAz": False}},
            stack="prod",
            region="eu-west-1",
            is_secret=lambda _k: False,
        )
    assert prod.protect and prod.network.nat_gateway_per_az and prod.database.backup_retention_days == 14
    assert prod.services[0].drain.pre_stop_sleep == 15 and prod.services[0].drain.termination_grace == 45


# ------------------------------------------------------------- each default in one place

ADMIN_ROLE = "arn:aws:iam::123456789012:role/admin"
MINIMAL = {
    "hostedZoneId": "Z0PRODEXAMPLE1234",
    "chart": "charts/ledger",
    "services": {
        "api": {"domain": "api.example.com", "imageRepository": "r", "blueImage": "v1", "greenImage": "v1"}
    },
    "cluster": {"access": {"admins": [ADMIN_ROLE]}, "endpointPublicAccess": False},
}


def parse_minimal(stack: str = "dev", **extra: object) -> StackConfig:
    """The smallest valid stack: every optional key unset."""
    return parse({**MINIMAL, **extra}, stack=stack, region="eu-west-1", is_secret=lambda _k: False)


def test_unset_keys_take_the_dataclass_defaults() -> None:
    got = parse_minimal()
    assert got.network == cfg.NetworkConfig(availability_zones=("eu-west-1a", "eu-west-1b", "eu-west-1c"))
    assert got.cluster == cfg.ClusterConfig(access=cfg.ClusterAccess(admins=(ADMIN_ROLE,)))
    assert dataclasses.replace(got.database, cidr="") == cfg.DatabaseConfig()
    (service,) = got.services
    assert service.colors == {color: cfg.ColorConfig("v1") for color in cfg.COLORS}
    assert (service.port, service.health, service.database) == (
        8000,
        cfg.HealthPaths(),
        cfg.ServiceDatabase(),
    )
    assert (service.cutover_env, service.env, service.secret_env, service.autoscaling) == (
        "dev-api",
        {},
        {},
        None,
    )
    assert got.traffic == cfg.TrafficConfig()
    assert got.load_balancer == cfg.LoadBalancerConfig()
    assert got.registry == cfg.RegistryConfig()
    drain = cfg.DrainConfig()
    assert service.drain == budget_for_deregistration(
        drain.deregistration_delay_seconds,
        drain.drain_seconds,
        drain.shutdown_timeout_seconds,
        drain.margin_seconds,
    )
    assert (got.tier, got.teardown, got.protect) == ("non-production", False, False)


# Another value for every defaulted field the parser fills from its dataclass ...
CHANGED_DEFAULTS: dict[tuple[str, str], object] = {
    ("NetworkConfig", "cidr"): "10.30.0.0/16",
    ("NetworkConfig", "nat_gateway_per_az"): True,
    ("NetworkConfig", "flow_log_retention_days"): 30,
    ("ClusterConfig", "version"): "1.35",
    ("ClusterConfig", "support_type"): "EXTENDED",
    ("ClusterConfig", "node_instance_type"): "m7i.large",
    ("ClusterConfig", "node_min"): 3,
    ("ClusterConfig", "node_max"): 6,
    ("ClusterConfig", "log_retention_days"): 30,
    ("DatabaseConfig", "instance_class"): "db.r6g.large",
    ("DatabaseConfig", "allocated_storage"): 30,
    ("DatabaseConfig", "max_allocated_storage"): 200,
    ("DatabaseConfig", "multi_az"): True,
    ("DatabaseConfig", "backup_retention_days"): 10,
    ("DatabaseConfig", "engine_version"): "17",
    ("ColorConfig", "replicas"): 4,
    ("TrafficConfig", "initial_weights"): {"blue": 0, "green": 100},
    ("TrafficConfig", "ttl"): 30,
    ("TrafficConfig", "stickiness_seconds"): 600,
    ("LoadBalancerConfig", "idle_timeout_seconds"): 100,
    ("LoadBalancerConfig", "app_keep_alive_seconds"): 200,
    ("LoadBalancerConfig", "access_log_retention_days"): 30,
    ("RegistryConfig", "keep_images"): 50,
    ("DrainConfig", "deregistration_delay_seconds"): 20,
    ("DrainConfig", "drain_seconds"): 7.0,
    ("DrainConfig", "shutdown_timeout_seconds"): 30.0,
    ("DrainConfig", "margin_seconds"): 6,
    ("StackConfig", "teardown"): True,
    ("ServiceConfig", "port"): 9000,
    ("HealthPaths", "live"): "/livez",
    ("HealthPaths", "ready"): "/readyz",
    ("HealthPaths", "startup"): "/startupz",
}
# ... and the defaulted fields whose default the parser derives from other values (documented
# beside the field) or that the stack must choose.
DERIVED_DEFAULTS = {
    ("NetworkConfig", "availability_zones"),  # the region's a, b and c
    ("ClusterConfig", "create"),  # false needs the existing cluster's keys
    ("ClusterConfig", "node_desired"),  # nodeMin
    ("ClusterConfig", "existing"),  # cluster.create false only
    ("ClusterConfig", "access"),  # required for a created cluster
    ("ClusterConfig", "load_balancer_controller"),  # cluster.create
    ("ClusterConfig", "endpoint_public_access"),  # the stack chooses public ranges or private
    ("ClusterConfig", "public_access_cidrs"),
    ("DatabaseConfig", "deletion_protection"),  # cutover:protect
    ("DatabaseConfig", "cidr"),  # the private subnets' block
    ("RegistryConfig", "create"),  # imageRepository unset
    ("StackConfig", "tier"),  # the environment
    ("StackConfig", "load_balancer"),  # sections, parsed from their own keys
    ("StackConfig", "registry"),
    ("DatabaseConfig", "name"),  # required once a service asks for the provisioned database
    ("ServiceConfig", "health"),  # sections (HealthPaths) or empty unless the service sets them
    ("ServiceConfig", "database"),
    ("ServiceConfig", "env"),
    ("ServiceConfig", "secret_env"),
    ("ServiceConfig", "autoscaling"),
    ("ServiceConfig", "chart_values"),
    ("ServiceConfig", "chart"),  # cutover:chart
    ("ServiceConfig", "rule_priority"),  # from the service's name
    ("StackConfig", "default_service"),  # the single-service layout's service, else the first by name
}
SECTIONS = (
    "NetworkConfig", "ClusterConfig", "DatabaseConfig", "ColorConfig", "TrafficConfig",
    "LoadBalancerConfig", "RegistryConfig", "DrainConfig", "StackConfig", "ServiceConfig", "HealthPaths",
)  # fmt: skip


def change_default(monkeypatch: pytest.MonkeyPatch, cls: type, name: str, value: object) -> None:
    """Make `value` the declared default of `cls.name` (field and class attribute)."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    if spec.default is dataclasses.MISSING:
        monkeypatch.setattr(spec, "default_factory", lambda: value)
    else:
        monkeypatch.setattr(spec, "default", value)
        monkeypatch.setattr(cls, name, value)


def test_every_defaulted_field_is_covered() -> None:
    defaulted = {
        (section, f.name)
        for section in SECTIONS
        for f in dataclasses.fields(getattr(cfg, section))
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    assert defaulted == set(CHANGED_DEFAULTS) | DERIVED_DEFAULTS


def test_the_parser_takes_each_default_from_its_dataclass(monkeypatch: pytest.MonkeyPatch) -> None:
    for (section, name), value in CHANGED_DEFAULTS.items():
        change_default(monkeypatch, getattr(cfg, section), name, value)
    got = parse_minimal()
    drain_fields = {
        "deregistration_delay_seconds": "deregistration_delay",
        "drain_seconds": "drain_seconds",
        "shutdown_timeout_seconds": "shutdown_timeout",
        "margin_seconds": "margin",
    }
    (service,) = got.services
    parsed: dict[str, object] = {
        "NetworkConfig": got.network,
        "ClusterConfig": got.cluster,
        "DatabaseConfig": got.database,
        "ColorConfig": service.colors["green"],
        "TrafficConfig": got.traffic,
        "LoadBalancerConfig": got.load_balancer,
        "RegistryConfig": got.registry,
        "DrainConfig": service.drain,
        "StackConfig": got,
        "ServiceConfig": service,
        "HealthPaths": service.health,
    }
    wrong = []
    for (section, name), value in CHANGED_DEFAULTS.items():
        attribute = drain_fields[name] if section == "DrainConfig" else name
        if getattr(parsed[section], attribute) != value:
            wrong.append(
                f"{section}.{name}: parsed {getattr(parsed[section], attribute)!r}, declared {value!r}"
            )
    assert wrong == []
    assert got.cluster.node_desired == 3 and service.colors["blue"].replicas == 4  # nodeMin; both colors


def test_production_defaults_live_in_one_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(dataclasses.is_dataclass(cls) for cls, _name in cfg.PRODUCTION_DEFAULTS)
    assert {(cls.__name__, name) for cls, name in cfg.PRODUCTION_DEFAULTS} <= set(CHANGED_DEFAULTS)
    for key, value in {
        (cfg.NetworkConfig, "nat_gateway_per_az"): False,
        (cfg.DatabaseConfig, "backup_retention_days"): 21,
        (cfg.ColorConfig, "replicas"): 5,
    }.items():
        monkeypatch.setitem(cfg.PRODUCTION_DEFAULTS, key, value)
    prod = parse_minimal("prod")
    assert (prod.network.nat_gateway_per_az, prod.database.backup_retention_days) == (False, 21)
    assert {c.replicas for c in prod.services[0].colors.values()} == {5}
    assert prod.database.multi_az and prod.database.deletion_protection and prod.protect
    dev = parse_minimal("dev")  # the non-production tier keeps the dataclasses' defaults
    assert (
        dev.network.nat_gateway_per_az,
        dev.database.backup_retention_days,
        dev.services[0].colors["blue"].replicas,
    ) == (
        False,
        7,
        2,
    )


SECTION_PARSERS = [
    ("network", "_network"),
    ("cluster", "_cluster"),
    ("database", "_database"),
    ("services.colors", "_colors"),
    ("traffic", "_traffic"),
    ("services.drain", "_drain"),
    ("load_balancer", "_load_balancer"),
    ("registry", "_registry"),
    ("services.health", "_health"),
    ("services.database", "_service_database"),
]


@pytest.mark.parametrize(("attribute", "function"), SECTION_PARSERS)
def test_each_section_is_parsed_by_its_own_function(
    monkeypatch: pytest.MonkeyPatch, attribute: str, function: str
) -> None:
    original = getattr(cfg, function)
    results: list[object] = []

    def spy(*args: object, **kwargs: object) -> object:
        results.append(original(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(cfg, function, spy)
    got = parse_minimal()
    assert len(results) == 1
    holder: object = got.services[0] if attribute.startswith("services.") else got
    assert getattr(holder, attribute.removeprefix("services.")) is results[0]


@pytest.mark.parametrize("zones", [3, "eu-west-1a", [1, 2], ["eu-west-1a", None]])
def test_availability_zones_that_are_not_a_list_of_names_are_refused_in_one_line(zones: object) -> None:
    with pytest.raises(
        ConfigError, match=r"^cutover:network\.availabilityZones must list at least two distinct zones"
    ):
        parse_minimal(network={"availabilityZones": zones})
