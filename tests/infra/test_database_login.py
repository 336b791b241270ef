"""Issue 12, item 1 on the infra side: no password in Pulumi, its state or Kubernetes.

Each color's pods log in as `ledger_app` with RDS IAM tokens (an IRSA role that may only
`rds-db:connect` as that user); its migration Job logs in as the schema owner with the
RDS-managed master secret read at run time (an IRSA role that may only read that secret).
Both survive RDS's rotation of the master password. What the program declares is checked
against what the chart really renders (real Helm) and what ledger really accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cutover_infra.values import DatabaseLogin, database_user_arn

from ledger.config import Settings
from tests.charts.helpers import NEWEST, render, validate
from tests.infra.harness import Run, ledger_values, run_program


@pytest.fixture(scope="module")
def prod() -> Run:
    return run_program("prod")


def rendered(run: Run, color: str) -> list[dict[str, Any]]:
    objects = render(ledger_values(run, color), name=f"ledger-{color}", namespace=f"ledger-{color}")
    validate(objects, NEWEST)
    return objects


def workload(objects: list[dict[str, Any]], kind: str) -> tuple[str, dict[str, str]]:
    """(service account, plain env) of the one Deployment or Job."""
    (found,) = [o for o in objects if o["kind"] == kind]
    spec = found["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] in ("ledger", "migrate")] or spec["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return spec["serviceAccountName"], env


def role_for(run: Run, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trust policy, inline policy) of an App role."""
    role = [r for r in run.of_type("aws:iam/role:Role") if r.name == name]
    policy = [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == f"{name}-policy"]
    assert len(role) == 1 and len(policy) == 1, name
    return json.loads(role[0].inputs["assumeRolePolicy"]), json.loads(policy[0].inputs["policy"])


def trusted_subject(trust: dict[str, Any]) -> str:
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith("prod-cluster-oidc")
    conditions = statement["Condition"]["StringEquals"]
    assert [v for k, v in conditions.items() if k.endswith(":aud")] == ["sts.amazonaws.com"]
    (subject,) = [v for k, v in conditions.items() if k.endswith(":sub")]
    return str(subject)


@pytest.mark.parametrize("color", ["blue", "green"])
def test_pods_log_in_as_ledger_app_with_iam_tokens_and_may_do_nothing_else(prod: Run, color: str) -> None:
    objects = rendered(prod, color)
    account, env = workload(objects, "Deployment")
    assert env["DATABASE_AUTH"] == "iam" and env["DATABASE_REGION"] == "eu-west-1"
    assert env["DATABASE_URL"].startswith("postgresql://ledger_app@prod-database-postgres.")
    assert ":" not in env["DATABASE_URL"].split("@")[0].removeprefix("postgresql://")  # no password
    trust, policy = role_for(prod, f"prod-{color}-app-db-login")
    # The role trusts exactly the service account the chart renders for the pods...
    assert trusted_subject(trust) == f"system:serviceaccount:ledger-{color}:{account}"
    (sa,) = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == account]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(f"prod-{color}-app-db-login")
    # ...and may only log in, as ledger_app, on this instance (its DbiResourceId).
    assert policy["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "rds-db:connect",
            "Resource": "arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXY1/ledger_app",
        }
    ]
    # What the chart hands the pods is a configuration ledger accepts.
    settings = Settings.from_env(env)
    assert settings.database_url == env["DATABASE_URL"]


@pytest.mark.parametrize("color", ["blue", "green"])
def test_the_migration_job_reads_the_rotated_master_secret_itself(prod: Run, color: str) -> None:
    objects = rendered(prod, color)
    account, env = workload(objects, "Job")
    assert env["DATABASE_AUTH"] == "secrets-manager"
    assert (
        env["DATABASE_SECRET_ARN"]
        == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!prod-database-postgres"
    )
    assert "@" not in env["DATABASE_URL"]  # user and password come from the secret, per connection
    trust, policy = role_for(prod, f"prod-{color}-app-migrate")
    assert trusted_subject(trust) == f"system:serviceaccount:ledger-{color}:{account}"
    assert account != workload(objects, "Deployment")[0]  # the pods cannot read the master secret
    (statement,) = policy["Statement"]
    assert statement["Resource"] == env["DATABASE_SECRET_ARN"]
    assert set(statement["Action"]) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    Settings.from_env(env)  # a configuration ledger accepts


def test_no_password_reaches_the_program_its_state_or_kubernetes(prod: Run) -> None:
    assert "aws:secretsmanager/getSecretVersion:getSecretVersion" not in prod.calls
    assert prod.of_type("kubernetes:core/v1:Secret") == []
    for color in ("blue", "green"):
        text = json.dumps(ledger_values(prod, color))
        assert "s3cr3t" not in text and "password" not in text.lower()
        assert not [o for o in rendered(prod, color) if o["kind"] == "Secret"]


def test_the_releases_wait_for_their_login_policies(prod: Run) -> None:
    """The first pods and the migration Job log in at once: the roles' policies first."""
    policies = {p.name for p in prod.of_type("aws:iam/rolePolicy:RolePolicy") if "-app-" in p.name}
    assert policies == {
        f"prod-{color}-app-{kind}-policy" for color in ("blue", "green") for kind in ("db-login", "migrate")
    }


def test_database_user_arn_follows_the_instance_arn() -> None:
    assert (
        database_user_arn("arn:aws:rds:eu-west-1:123456789012:db:cutover-prod-ledger", "db-XYZ", "ledger_app")
        == "arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-XYZ/ledger_app"
    )
    assert database_user_arn("arn:aws-cn:rds:cn-north-1:123456789012:db:x", "db-1", "other").startswith(
        "arn:aws-cn:rds-db:cn-north-1:123456789012:dbuser:db-1/other"
    )
    with pytest.raises(ValueError, match="not an RDS instance ARN"):
        database_user_arn("arn:aws:iam::123456789012:role/x", "db-1", "ledger_app")


def test_login_urls_carry_no_password_and_require_tls() -> None:
    login = DatabaseLogin(
        "db.example", 5432, "ledger", "eu-west-1", "arn:secret", "arn:app", "arn:migrate", "ledger_app"
    )
    assert login.app_url == "postgresql://ledger_app@db.example:5432/ledger?sslmode=require"
    assert login.migration_url == "postgresql://db.example:5432/ledger?sslmode=require"
