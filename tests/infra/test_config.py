"""Bad stacks fail before any resource is declared, with the key and the fix."""

from __future__ import annotations

import json

import pytest
from cutover_infra.config import ConfigError, parse

from tests.infra.harness import Run, run_program, stack_config


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


BAD_STACKS = [
    ("missing domain", "prod", {"domain": None}, "cutover:domain"),
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
    ("latest tag", "prod", {"greenImage": "latest"}, "cutover:greenImage"),
    (
        "zone of another region",
        "prod",
        {"network": {"availabilityZones": ["us-east-1a", "us-east-1b"]}},
        "cutover:network.availabilityZones",
    ),
    ("tiny VPC", "staging", {"network": {"cidr": "10.0.0.0/24"}}, "cutover:network.cidr"),
    ("negative drain", "prod", {"drain": {"drainSeconds": -1}}, "cutover:drain.drainSeconds"),
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
    ("a repository and one to create", "prod", {"registry": {"create": True}}, "cutover:imageRepository"),
    ("a digest that is not sha256", "prod", {"greenImage": "v1@sha256:abc"}, "cutover:greenImage"),
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
    config, secrets = mutated("prod", domain="not a domain")
    run = Run()
    with pytest.raises(Exception, match="cutover:domain"):
        run_program("prod", config, secrets, run=run)
    assert run.registered == [] and run.inputs == {}


def test_defaults_follow_the_environment() -> None:
    common = {
        "domain": "ledger.example.com",
        "hostedZoneId": "Z0PRODEXAMPLE1234",
        "imageRepository": "r",
        "blueImage": "v1",
        "greenImage": "v1",
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
    assert prod.drain.pre_stop_sleep == 15 and prod.drain.termination_grace == 45
