"""Several services per stack (issue 16): each declared by config alone, on one shared ALB
per color, with its own records, release state and cutover environment; the reference
service is one user of the component like any other; a single-service stack upgrades
without replacing a resource."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cutover_infra.config import ConfigError, rule_priority

from cutover.envconfig import parse as parse_env
from tests.charts.helpers import NEWEST, checkov_failures, render, validate
from tests.infra.harness import (
    RecordingMocks,
    Run,
    parsed,
    run_program,
    service_values,
    services_with,
    stack_config,
)

ROOT = Path(__file__).resolve().parents[2]
DEV_SERVICES = ("ledger", "greeter")


@pytest.fixture(scope="module")
def dev() -> Run:
    return run_program("dev")


def test_the_component_code_names_no_service() -> None:
    """ledger is a user of the platform: its name lives in stack config and examples only."""
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "infra").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search("ledger", line, flags=re.IGNORECASE)
    ]
    assert found == []


def test_two_services_share_one_alb_per_color_and_pass_the_policy_pack(dev: Run) -> None:
    assert dev.violations == []
    assert len(dev.of_type("aws:lb/loadBalancer:LoadBalancer")) == 2  # one per color, not per service
    assert len(dev.of_type("cutover:service:BlueGreenService")) == 2
    groups = {g.inputs["name"]: g.inputs for g in dev.of_type("aws:lb/targetGroup:TargetGroup")}
    assert set(groups) == {
        "cutover-dev-blue",  # ledger keeps the single-service names (cutoverEnv: dev)
        "cutover-dev-green",
        "cutover-dev-greeter-blue",
        "cutover-dev-greeter-green",
    }
    assert {(g["port"], g["healthCheck"]["path"]) for g in groups.values()} == {
        (8000, "/health/ready"),
        (9000, "/readyz"),
    }
    rules = [r.inputs for r in dev.of_type("aws:lb/listenerRule:ListenerRule")]
    hosts = sorted(tuple(r["conditions"][0]["hostHeader"]["values"]) for r in rules)
    assert hosts == [
        ("greeter.dev.example.com", "blue.greeter.dev.example.com"),
        ("greeter.dev.example.com", "green.greeter.dev.example.com"),
        ("ledger.dev.example.com", "blue.ledger.dev.example.com"),
        ("ledger.dev.example.com", "green.ledger.dev.example.com"),
    ]
    by_listener: dict[str, list[int]] = {}
    for rule in rules:
        by_listener.setdefault(rule["listenerArn"], []).append(rule["priority"])
    assert all(len(set(p)) == len(p) == 2 for p in by_listener.values())  # unique per listener
    https = [x.inputs for x in dev.of_type("aws:lb/listener:Listener") if x.inputs["protocol"] == "HTTPS"]
    assert all(x["defaultActions"][0]["fixedResponse"]["statusCode"] == "404" for x in https)
    # greeter's certificate rides on each HTTPS listener beside the default one (ledger's)
    assert len(dev.of_type("aws:lb/listenerCertificate:ListenerCertificate")) == 2
    ports = sorted(r.inputs["fromPort"] for r in dev.of_type("aws:ec2/securityGroupRule:SecurityGroupRule"))
    assert ports == [8000, 8000, 9000, 9000]  # each ALB reaches each service's pods on its port


def test_each_service_has_its_own_records_release_state_and_cutover_env(dev: Run) -> None:
    records = [r.inputs for r in dev.of_type("aws:route53/record:Record")]
    weighted = sorted((r["name"], r["setIdentifier"]) for r in records if r.get("setIdentifier"))
    assert weighted == [
        ("greeter.dev.example.com", "blue"),
        ("greeter.dev.example.com", "green"),
        ("ledger.dev.example.com", "blue"),
        ("ledger.dev.example.com", "green"),
    ]
    generations = sorted(r["name"] for r in records if r["type"] == "TXT")
    assert generations == ["_cutover.greeter.dev.example.com", "_cutover.ledger.dev.example.com"]
    checks = {
        c.inputs["fqdn"]: c.inputs["resourcePath"] for c in dev.of_type("aws:route53/healthCheck:HealthCheck")
    }
    assert checks["green.greeter.dev.example.com"] == "/readyz"
    assert checks["blue.ledger.dev.example.com"] == "/health/ready"
    envs = dev.outputs["cutover_envs"]
    assert set(envs) == set(DEV_SERVICES)
    greeter = parse_env(envs["greeter"], Path("dev-greeter.json"))
    assert greeter.name == "dev-greeter" and greeter.ready_path == "/readyz"
    assert [c.path for c in greeter.smoke_checks] == ["/livez"]
    assert greeter.router["record_name"] == "greeter.dev.example.com"
    assert greeter.deployer == {
        "type": "pulumi",
        "stack": "dev",
        "work_dir": ".",
        "config_key": "cutover:services.greeter.{color}Image",
        "service": "greeter",
    }
    assert greeter.endpoints["green"] == "https://green.greeter.dev.example.com"
    assert greeter.colors["blue"]["target_group_arn"].split("/")[1] == "cutover-dev-greeter-blue"
    ledger = parse_env(envs["ledger"], Path("dev.json"))
    assert ledger.name == "dev" and dev.outputs["cutover_env"] == envs["ledger"]  # the single-service output
    assert greeter.lock["table"] == ledger.lock["table"] == "cutover-dev-locks"  # one table, keys per service
    ssm = sorted(p.inputs["name"] for p in dev.of_type("aws:ssm/parameter:Parameter"))
    assert ssm == ["/cutover/dev-greeter/cutover-env", "/cutover/dev/cutover-env"]
    (green_urn,) = envs["greeter"]["colors"]["green"]["urns"]  # what a release of green targets
    assert green_urn.endswith("cutover:app:App$kubernetes:helm.sh/v3:Release::dev-greeter-green-app-release")


def test_the_second_service_is_onboarded_by_config_alone(dev: Run) -> None:
    values = service_values(dev, "greeter", "blue")
    assert values["containerPort"] == 9000 and values["nameOverride"] == "greeter"
    assert values["health"] == {"livePath": "/livez", "readyPath": "/readyz", "startupPath": "/startupz"}
    assert values["database"] == {"enabled": False} and "migrations" not in values
    assert values["env"] == {"GREETING_STYLE": "plain"} and values["args"] == []
    assert values["cluster"] == {"enabled": False}
    assert values["autoscaling"] == {"enabled": True, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70}
    assert values["replicaCount"] == 2  # the autoscaler's minimum
    namespaces = sorted(n.inputs["metadata"]["name"] for n in dev.of_type("kubernetes:core/v1:Namespace"))
    assert namespaces == ["greeter-blue", "greeter-green", "ledger-blue", "ledger-green"]
    roles = [r.name for r in dev.of_type("aws:iam/role:Role")]
    assert roles and not [r for r in roles if "greeter" in r]  # no database: no login roles
    ledger = service_values(dev, "ledger", "green")
    assert ledger["cluster"] == {"enabled": True} and ledger["database"]["auth"] == "iam"  # its own values


@pytest.mark.parametrize("service", DEV_SERVICES)
def test_both_services_render_for_real_with_strict_schemas_and_no_checkov_failure(
    dev: Run, service: str
) -> None:
    for color in ("blue", "green"):
        values = service_values(dev, service, color)
        objects = render(values, name=f"{service}-{color}", namespace=f"{service}-{color}")
        validate(objects, NEWEST)
        failed, passed = checkov_failures(objects)
        assert failed == [] and passed > 20
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert deployment["metadata"]["name"] == f"{service}-{color}"
        probes = {
            k: container[k]["httpGet"]["path"] for k in ("livenessProbe", "readinessProbe", "startupProbe")
        }
        (expected,) = [s.health for s in parsed("dev").services if s.name == service]
        assert probes == {
            "livenessProbe": expected.live,
            "readinessProbe": expected.ready,
            "startupProbe": expected.startup,
        }
        env = {e["name"] for e in container["env"]}
        assert ("DATABASE_URL" in env) == (service == "ledger")


def test_a_single_service_stack_upgrades_without_replacing_anything() -> None:
    """Every resource the single-service program declared for prod is still declared, under
    its URN or an alias of it, with the inputs that name it unchanged."""
    before: dict[str, dict[str, Any]] = json.loads(
        (ROOT / "tests/infra/data/single_service_prod.json").read_text()
    )["prod"]
    run = run_program("prod")
    now = {r.urn: r for r in run.resources}
    aliased = {alias: r for r in run.resources for alias in r.alias_urns}
    claims = {alias: {r.urn for r in run.resources if alias in r.alias_urns} for alias in aliased}
    assert all(len(urns) == 1 for urns in claims.values())  # no old URN claimed by two resources
    lost, changed = [], []
    for urn, inputs in before.items():
        resource = now.get(urn) or aliased.get(urn)
        if resource is None:
            lost.append(urn)
            continue
        for key, value in inputs.items():
            if key in resource.ignore_changes:
                continue  # the program keeps what the resource was made with
            got: Any = resource.inputs
            for part in key.split("."):
                got = got.get(part) if isinstance(got, dict) else None
            if got != value:
                changed.append(f"{urn} {key}: {value!r} -> {got!r}")
    assert lost == [] and changed == []
    moved = [urn for urn in before if urn not in now]
    assert moved and all("cutover:service:BlueGreenService$" in aliased[u].urn for u in moved)


def test_bad_service_config_names_the_key_and_declares_nothing() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"greeter": {"port": 80}}, r"cutover:services\.greeter\.port must be a whole number from 1024"),
        (
            {"greeter": {"health": {"ready": "readyz"}}},
            r"cutover:services\.greeter\.health\.ready must be a path",
        ),
        ({"greeter": {"env": {"PORT": "1"}}}, r"cutover:services\.greeter\.env\.PORT is set by the platform"),
        (
            {"greeter": {"env": {"bad-name": "1"}}},
            r"cutover:services\.greeter\.env\.bad-name is not an environment",
        ),
        (
            {"greeter": {"database": {"mode": "shared"}}},
            r"cutover:services\.greeter\.database\.mode must be one of",
        ),
        (
            {"greeter": {"database": {"mode": "provisioned"}}},
            r"cutover:services\.greeter\.database\.user is missing",
        ),
        (
            {"greeter": {"chartValues": {"image": {}}}},
            r"cutover:services\.greeter\.chartValues\.image is computed",
        ),
        (
            {"greeter": {"domain": "ledger.dev.example.com"}},
            r"cutover:services\.ledger\.domain gives the host name ledger\.dev\.example\.com, as service greeter",
        ),
        (  # greeter's name would be one of ledger's color hosts: ledger's rule would take its traffic
            {"greeter": {"domain": "blue.ledger.dev.example.com"}},
            r"cutover:services\.ledger\.domain gives the host name blue\.ledger\.dev\.example\.com, as service greeter",
        ),
        (
            {"greeter": {"cutoverEnv": "dev"}},
            r"cutover:services\.ledger\.cutoverEnv gives the cutover environment dev",
        ),
        (
            {"greeter": {"rulePriority": rule_priority("ledger")}},
            r"cutover:services\.ledger\.rulePriority gives",
        ),
        (
            {"greeter": {"domain": "a" * 60 + ".example.com"}},
            r"cutover:services\.greeter\.domain is 72 characters",
        ),
        ({"greeter": {"blueImage": "v1\n"}}, r"cutover:services\.greeter\.blueImage must be an image tag"),
        ({"greeter": {"colors": {"blue": 3}}}, r"cutover:services\.greeter\.colors\.blue must be an object"),
        (
            {"greeter": {"colors": {"blue": {"replica": 3}}}},
            r"cutover:services\.greeter\.colors\.blue\.replica is not",
        ),
        ({"greeter": {"autoscaling": 0}}, r"cutover:services\.greeter\.autoscaling must be an object"),
        (
            {"greeter": {"env": {"LOG_LEVEL": "debug"}}},
            r"cutover:services\.greeter\.env\.LOG_LEVEL is set by the",
        ),
        (
            {"greeter": {"env": {"DATABASE_POOL": "3"}}},
            r"cutover:services\.greeter\.env\.DATABASE_POOL is set by",
        ),
        ({"greeter": {"chartValues": {"trustedProxies": []}}}, r"chartValues\.trustedProxies is computed"),
        ({"greeter": {"chart": "x" * 300}}, r"cutover:services\.greeter\.chart must be the directory"),
        (
            {"greeter": {"database": {"mode": "provisioned", "user": "ledger_app"}}},
            r"cutover:services\.ledger\.database\.user gives the database user ledger_app, as service greeter",
        ),
        (
            {"greeter": {"database": {"mode": "provisioned", "user": "ledger"}}},
            r"cutover:services\.greeter\.database\.user is the database's master user \(ledger\)",
        ),
        ({"greeter": {"health": False}}, r"cutover:services\.greeter\.health must be an object"),
        ({"greeter": {"chartValues": False}}, r"cutover:services\.greeter\.chartValues must be an object"),
        ({"greeter": {"colors": ""}}, r"cutover:services\.greeter\.colors must be an object"),
        ({"greeter": {"port": "9" * 5000}}, r"cutover:services\.greeter\.port must be a whole number"),
        (
            {"greeter": {"keepAliveSeconds": 60}},
            r"cutover:services\.greeter\.keepAliveSeconds \(60\) must be longer",
        ),
        (
            {"greeter": {"secretEnv": {"TOKEN": {"secret": "x"}}}},
            r"cutover:services\.greeter\.secretEnv\.TOKEN\.key",
        ),
        (
            {"greeter": {"autoscaling": {"maxReplicas": 1}}},
            r"autoscaling\.maxReplicas must be a whole number from 2",
        ),
        ({"greeter": {"chart": "charts/none"}}, r"cutover:services\.greeter\.chart must be the directory"),
    ]
    for change, message in cases:
        ((name, fields),) = change.items()
        config, secrets = stack_config("dev")
        config["cutover:services"] = json.dumps(services_with("dev", name, **fields))
        run = Run()
        with pytest.raises(ConfigError, match=message) as error:
            run_program("dev", config, secrets, run=run)
        assert run.registered == [], message
        line = str(error.value)  # one line, bounded: a 5,000-character value is not echoed whole
        assert "\n" not in line and len(line) < 400 and "fix:" in line, line[:200]


def test_a_stack_without_a_provisioned_database_makes_none() -> None:
    config, secrets = stack_config("dev")
    services = json.loads(config["cutover:services"])
    config["cutover:services"] = json.dumps({"greeter": services["greeter"]})
    run = run_program("dev", config, secrets)
    assert run.violations == [] and not run.of_type("aws:rds/instance:Instance")
    assert "databaseAddress" not in run.outputs and "cutover_env" not in run.outputs
    with pytest.raises(ConfigError, match=r"cutover:database\.name is not set, and service ledger asks"):
        parsed("dev", database={"instanceClass": "db.t4g.micro"})


def test_the_services_order_in_config_changes_nothing() -> None:
    """Pulumi hands object config over with sorted keys, whatever the YAML's order: the
    program may not depend on it (priorities, the listeners' default certificate)."""
    config, secrets = stack_config("dev")
    services = json.loads(config["cutover:services"])
    config["cutover:services"] = json.dumps(dict(reversed(list(services.items()))))
    reordered, dev = run_program("dev", config, secrets), run_program("dev")

    def shape(run: Run) -> list[tuple[str, Any]]:
        return sorted(
            (r.urn, r.inputs.get("priority") or r.inputs.get("certificateArn"))
            for r in run.resources
            if r.type in ("aws:lb/listenerRule:ListenerRule", "aws:lb/listener:Listener")
        )

    assert shape(reordered) == shape(dev)
    https = [x.inputs for x in dev.of_type("aws:lb/listener:Listener") if x.inputs["protocol"] == "HTTPS"]
    # ledger's certificate stays the default (it was, before the stack listed services), though greeter sorts first
    assert {x["certificateArn"].rsplit(":", 1)[1] for x in https} == {"dev-certificate-cert"}
    (chosen,) = {parsed("dev", loadBalancer={"defaultService": "greeter"}).default_service}
    assert chosen == "greeter"
    with pytest.raises(
        ConfigError, match=r"cutover:loadBalancer\.defaultService must name one of the services"
    ):
        parsed("dev", loadBalancer={"defaultService": "nope"})


def test_tags_and_values_that_pulumi_stores_as_numbers_or_booleans_are_read_as_text() -> None:
    """`pulumi config set --path ...greenImage 4821937` stores a number (a short SHA of
    digits, a build number); `--path ...env.FLAG true` a boolean."""
    services = services_with("dev", "greeter", greenImage=4821937, env={"FLAG": True, "COUNT": 3})
    (greeter,) = [s for s in parsed("dev", services=services).services if s.name == "greeter"]
    assert greeter.colors["green"].image == "4821937"
    assert greeter.env == {"FLAG": "true", "COUNT": "3"}


class _ReleasedBefore(RecordingMocks):
    """A lock table holding the single-service layout's release state of prod."""

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:dynamodb/getTableItem:getTableItem":
            if json.loads(args.args["key"])["lock_id"]["S"] == "prod#release-state":
                item = {"lock_id": {"S": "prod#release-state"}, "state": {"S": "{}"}}
                return {
                    "tableName": args.args["tableName"],
                    "key": args.args["key"],
                    "item": json.dumps(item),
                }, []
            return {}, [("item", "empty result")]
        return super().call(args)


def test_an_upgrade_that_forgets_cutover_env_is_refused_before_anything_is_declared() -> None:
    config, secrets = stack_config("prod")
    config["cutover:services"] = json.dumps(services_with("prod", "ledger", cutoverEnv=None))
    run = Run()
    with pytest.raises(
        Exception, match=r"no service of cutover:services has cutoverEnv prod.*fix: pulumi config"
    ):
        run_program("prod", config, secrets, run=run, mocks=_ReleasedBefore)
    assert run.registered == []
    assert run_program("prod", mocks=_ReleasedBefore).violations == []  # with cutoverEnv: prod, it builds
