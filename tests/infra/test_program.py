"""The Pulumi program for each example stack, under mocks: the graph it declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from cutover_infra.budget import budget_for_deregistration
from cutover_infra.components.app import without_chart_binding
from cutover_infra.values import TLS_POLICY, DatabaseLogin, chart_values

from cutover.envconfig import parse as parse_env
from tests.charts.helpers import NEWEST, render, validate
from tests.infra.harness import Run, parsed, run_program

STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[str, Run]:
    return request.param, run_program(request.param)


@pytest.fixture(scope="module")
def prod() -> Run:
    return run_program("prod")


@pytest.fixture(scope="module")
def dev() -> Run:
    return run_program("dev")


def test_every_resource_passes_the_policy_pack(stack: tuple[str, Run]) -> None:
    name, run = stack
    assert run.violations == [], name
    assert len(run.resources) > 30


def test_components_own_their_children(stack: tuple[str, Run]) -> None:
    _, run = stack
    components = [r for r in run.resources if r.type.startswith("cutover:")]
    assert {c.type.split(":")[1] for c in components} >= {
        "cluster",
        "database",
        "traffic",
        "app",
        "release",
        "dns",
    }
    for resource in run.resources:
        if resource.type == "cutover:service:BlueGreenService" or (
            resource.type.startswith("cutover:") and (resource.parent_type is None)
        ):
            assert resource.parent_type is None, resource  # components sit at the top of the stack ...
        elif resource.type.startswith("cutover:"):  # ... or are a service's parts
            assert resource.parent_type == "cutover:service:BlueGreenService", resource
        else:
            assert resource.parent_type and resource.parent_type.startswith("cutover:"), resource


def test_database_is_private_encrypted_ssl_only_and_reached_from_the_cluster_only(prod: Run) -> None:
    db = prod.one("aws:rds/instance:Instance")
    assert db.inputs["publiclyAccessible"] is False and db.inputs["storageEncrypted"] is True
    assert db.inputs["manageMasterUserPassword"] is True and "password" not in db.inputs
    assert db.inputs["skipFinalSnapshot"] is False and db.inputs["finalSnapshotIdentifier"]
    assert db.inputs["backupRetentionPeriod"] == 30
    params = {
        p["name"]: p["value"] for p in prod.one("aws:rds/parameterGroup:ParameterGroup").inputs["parameters"]
    }
    assert params["rds.force_ssl"] == "1"
    (sg,) = [
        s
        for s in prod.of_type("aws:ec2/securityGroup:SecurityGroup")
        if s.parent_type == "cutover:database:Database"
    ]
    (rule,) = sg.inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"]) == (5432, 5432) and rule["securityGroups"] == ["sg-0c1u5732"]
    assert not rule.get("cidrBlocks")
    # No password anywhere in the program, its state or Kubernetes: the pods log in with IAM
    # tokens, the migration Job reads the rotated master secret itself (test_database_login.py).
    assert prod.of_type("kubernetes:core/v1:Secret") == []
    assert "aws:secretsmanager/getSecretVersion:getSecretVersion" not in prod.calls


def test_prod_and_dev_differ_where_they_should(prod: Run, dev: Run) -> None:
    prod_db, dev_db = prod.one("aws:rds/instance:Instance"), dev.one("aws:rds/instance:Instance")
    assert (prod_db.inputs["multiAz"], prod_db.inputs["deletionProtection"], prod_db.protect) == (
        True,
        True,
        True,
    )
    assert (dev_db.inputs["multiAz"], dev_db.inputs["deletionProtection"], dev_db.protect) == (
        False,
        False,
        False,
    )
    assert all(t.protect for t in prod.of_type("aws:dynamodb/table:Table"))
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 3
    assert prod.of_type("aws:eks/cluster:Cluster") and not dev.of_type(
        "aws:eks/cluster:Cluster"
    )  # dev: existing cluster
    assert not dev.of_type("aws:ec2/vpc:Vpc")
    assert all(
        lb.inputs["enableDeletionProtection"] for lb in prod.of_type("aws:lb/loadBalancer:LoadBalancer")
    )


def test_network_spans_zones_with_the_load_balancer_controller_tags(prod: Run) -> None:
    subnets = prod.of_type("aws:ec2/subnet:Subnet")
    assert len({s.inputs["availabilityZone"] for s in subnets}) == 3
    public = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/elb") == "1"]
    private = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/internal-elb") == "1"]
    assert len(public) == len(private) == 3


def test_each_color_has_an_https_alb_with_sticky_ready_checked_targets(prod: Run) -> None:
    budget = budget_for_deregistration(10, 5, 20, 5)
    groups = prod.of_type("aws:lb/targetGroup:TargetGroup")
    assert len(groups) == 2
    for group in groups:
        assert group.inputs["targetType"] == "ip" and group.inputs["healthCheck"]["path"] == "/health/ready"
        assert group.inputs["stickiness"] == {"enabled": True, "type": "lb_cookie", "cookieDuration": 3600}
        assert group.inputs["deregistrationDelay"] == budget.deregistration_delay
    listeners = prod.of_type("aws:lb/listener:Listener")
    https = [listener for listener in listeners if listener.inputs["protocol"] == "HTTPS"]
    assert len(https) == 2 and all(listener.inputs["sslPolicy"] == TLS_POLICY for listener in https)
    http = [listener for listener in listeners if listener.inputs["protocol"] == "HTTP"]
    assert len(http) == 2 and all(
        listener.inputs["defaultActions"][0]["redirect"]["protocol"] == "HTTPS" for listener in http
    )
    alb_sgs = [
        s
        for s in prod.of_type("aws:ec2/securityGroup:SecurityGroup")
        if s.parent_type == "cutover:traffic:LoadBalancer"
    ]
    assert all(
        {(r["fromPort"], r["toPort"]) for r in s.inputs["ingress"]} == {(80, 80), (443, 443)} for s in alb_sgs
    )


def test_route53_weighted_records_direct_names_health_checks_and_generation(prod: Run) -> None:
    records = prod.of_type("aws:route53/record:Record")
    weighted = [r for r in records if r.inputs.get("weightedRoutingPolicies")]
    assert {
        r.inputs["setIdentifier"]: r.inputs["weightedRoutingPolicies"][0]["weight"] for r in weighted
    } == {"blue": 100, "green": 0}
    # the live weights (read at run time: tests/infra/test_day2.py), never ignore_changes' stale state
    assert all(r.inputs["healthCheckId"] and not r.ignore_changes for r in weighted)
    assert {
        r.inputs["name"] for r in records if r.inputs["type"] == "A" and not r.inputs.get("setIdentifier")
    } == {
        "blue.ledger.example.com",
        "green.ledger.example.com",
    }
    (generation,) = [r for r in records if r.inputs["type"] == "TXT"]
    assert generation.inputs["name"] == "_cutover.ledger.example.com" and not generation.ignore_changes
    assert generation.inputs["records"] == ["cutover-generation=0"]  # no record live yet
    checks = prod.of_type("aws:route53/healthCheck:HealthCheck")
    assert {c.inputs["fqdn"] for c in checks} == {"blue.ledger.example.com", "green.ledger.example.com"}
    assert all(c.inputs["resourcePath"] == "/health/ready" and c.inputs["type"] == "HTTPS" for c in checks)


def test_release_tables_have_pitr_encryption_and_lease_ttl(prod: Run) -> None:
    tables = {t.inputs["name"]: t.inputs for t in prod.of_type("aws:dynamodb/table:Table")}
    locks, history = tables["cutover-prod-locks"], tables["cutover-prod-history"]
    assert locks["ttl"] == {"attributeName": "expires_at", "enabled": True} and locks["hashKey"] == "lock_id"
    assert (history["hashKey"], history["rangeKey"]) == ("env", "sort_key")
    for table in (locks, history):
        assert table["pointInTimeRecovery"]["enabled"] and table["serverSideEncryption"]["enabled"]


def test_namespaces_and_the_chart_values_render_for_real(prod: Run) -> None:
    namespaces = prod.of_type("kubernetes:core/v1:Namespace")
    assert {n.inputs["metadata"]["name"] for n in namespaces} == {"ledger-blue", "ledger-green"}
    assert all(
        n.inputs["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
        for n in namespaces
    )
    releases = [
        r
        for r in prod.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs.get("chart", "").endswith("charts/ledger")
    ]
    assert len(releases) == 2
    for release in releases:
        values = release.inputs["values"]
        color = values["color"]
        # The chart's own TargetGroupBinding off: the App declares it before the pods.
        assert values == without_chart_binding(
            chart_values(
                service=parsed("prod").services[0],
                color=color,
                image_repository="123456789012.dkr.ecr.eu-west-1.amazonaws.com/ledger",
                image_tag="v1.4.1",
                replicas=3,
                target_group_arn=f"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/cutover-prod-{color}/0123456789abcdef",
                budget=budget_for_deregistration(10, 5, 20, 5),
                vpc_cidr="10.20.0.0/16",
                database_cidr="10.20.0.0/18",
                idle_timeout_seconds=60,
                keep_alive_seconds=75,
                database_login=DatabaseLogin(
                    address="prod-database-postgres.abc.eu-west-1.rds.amazonaws.com",
                    port=5432,
                    database="ledger",
                    region="eu-west-1",
                    master_secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!prod-database-postgres",
                    app_role_arn=f"arn:aws:mock:eu-west-1:123456789012:prod-{color}-app-db-login",
                    migration_role_arn=f"arn:aws:mock:eu-west-1:123456789012:prod-{color}-app-migrate",
                    user="ledger_app",
                ),
            )
        )
        objects = render(values, name=f"ledger-{color}", namespace=f"ledger-{color}")
        validate(objects, NEWEST)
        assert not any(o["kind"] == "TargetGroupBinding" for o in objects)


def test_cutover_env_output_is_what_cutover_reads(prod: Run) -> None:
    env = parse_env(prod.outputs["cutover_env"], Path("prod.json"))
    assert env.name == "prod" and env.router["type"] == "route53" and env.deployer["type"] == "pulumi"
    assert env.endpoints == {
        "blue": "https://blue.ledger.example.com",
        "green": "https://green.ledger.example.com",
    }
    urns = prod.outputs["cutover_env"]["colors"]["green"]["urns"]
    assert urns and urns[0].endswith("prod-green-app-release") and "cutover:app:App" in urns[0]
