"""How the chart's pods and migration Job log in to Postgres, and the keep-alive rule.

Real Helm renders each login mode; every object is validated strictly against the
Kubernetes schemas; bad combinations are refused naming the value to set."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from cutover_infra.budget import DrainBudgetError, check_keep_alive
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.charts.helpers import (
    BASE_VALUES,
    KUBE_VERSIONS,
    NATIVE_SLEEP_SINCE,
    by_kind,
    checkov_failures,
    merged,
    render,
    validate,
)

APP_URL = "postgresql://ledger_app@ledger.abc123.eu-west-1.rds.amazonaws.com:5432/ledger?sslmode=verify-full"
OWNER_URL = "postgresql://ledger.abc123.eu-west-1.rds.amazonaws.com:5432/ledger?sslmode=verify-full"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-0123-AbCdEf"
APP_ROLE_ARN = "arn:aws:iam::123456789012:role/ledger-app"
MIGRATE_ROLE_ARN = "arn:aws:iam::123456789012:role/ledger-migrate"

IAM = {
    "database": {"auth": "iam", "url": APP_URL, "region": "eu-west-1", "existingSecret": ""},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": APP_ROLE_ARN}},
    "migrations": {
        "database": {"auth": "secrets-manager", "url": OWNER_URL, "secretArn": SECRET_ARN},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": MIGRATE_ROLE_ARN}},
    },
}
PASSWORD_FILE = {
    "database": {
        "auth": "password-file",
        "url": APP_URL,
        "passwordFile": {"secretName": "ledger-app-password", "key": "password"},
    },
}
MODES: dict[str, dict[str, Any]] = {"url": {}, "iam": IAM, "password-file": PASSWORD_FILE}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _pod(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = by_kind(objects, kind)
    return dict(obj["spec"]["template"]["spec"])


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_login_mode_renders_valid_kubernetes(mode: str, version: str) -> None:
    native = tuple(int(p) for p in version.split(".")[:2]) >= NATIVE_SLEEP_SINCE
    objects = render(merged(BASE_VALUES, MODES[mode], {"preStop": {"nativeSleep": native}}))
    validate(objects, version)


def test_url_mode_is_todays_behaviour() -> None:
    objects = render(BASE_VALUES)
    pod, job = _pod(objects, "Deployment"), _pod(objects, "Job")
    secret = {"secretKeyRef": {"name": "ledger-database", "key": "DATABASE_URL"}}
    assert _env(pod["containers"][0])["DATABASE_URL"] == secret
    assert "DATABASE_AUTH" not in _env(pod["containers"][0])
    assert _env(job["containers"][0])["DATABASE_URL"] == secret
    # The Job has its own ServiceAccount, created as a hook before it (first install).
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind(objects, "ServiceAccount")}
    assert job["serviceAccountName"] == "ledger-blue-migrate" != pod["serviceAccountName"]
    hook = accounts["ledger-blue-migrate"]["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook["helm.sh/hook-weight"]) < 0
    assert "hook-succeeded" not in hook["helm.sh/hook-delete-policy"]


def test_iam_mode_pods_sign_tokens_and_the_job_reads_the_master_secret() -> None:
    objects = render(merged(BASE_VALUES, IAM))
    pod, job = _pod(objects, "Deployment"), _pod(objects, "Job")
    assert (
        _env(pod["containers"][0]).items()
        >= {
            "DATABASE_AUTH": "iam",
            "DATABASE_URL": APP_URL,
            "DATABASE_REGION": "eu-west-1",
        }.items()
    )
    assert (
        _env(job["containers"][0]).items()
        >= {
            "DATABASE_AUTH": "secrets-manager",
            "DATABASE_URL": OWNER_URL,
            "DATABASE_SECRET_ARN": SECRET_ARN,
        }.items()
    )
    # Two identities: the pods' role may rds-db:connect, the Job's may read the secret.
    accounts = {
        sa["metadata"]["name"]: sa["metadata"].get("annotations", {})
        for sa in by_kind(objects, "ServiceAccount")
    }
    assert accounts["ledger-blue"] == {"eks.amazonaws.com/role-arn": APP_ROLE_ARN}
    assert accounts["ledger-blue-migrate"]["eks.amazonaws.com/role-arn"] == MIGRATE_ROLE_ARN
    assert (pod["serviceAccountName"], job["serviceAccountName"]) == ("ledger-blue", "ledger-blue-migrate")
    # Both need HTTPS to AWS (STS; Secrets Manager): their NetworkPolicies allow 443.
    policies = {p["metadata"]["name"]: p["spec"]["egress"] for p in by_kind(objects, "NetworkPolicy")}
    for name in ("ledger-blue", "ledger-blue-migrate"):
        assert {"port": 443, "protocol": "TCP"} in [port for rule in policies[name] for port in rule["ports"]]
    assert not by_kind(objects, "Secret")


def test_url_mode_allows_no_https_egress() -> None:
    policies = by_kind(render(BASE_VALUES), "NetworkPolicy")
    assert all(
        port["port"] != 443 for p in policies for rule in p["spec"]["egress"] for port in rule["ports"]
    )


def test_password_file_mode_mounts_the_secret_as_a_file_that_can_be_refreshed() -> None:
    pod = _pod(render(merged(BASE_VALUES, PASSWORD_FILE)), "Deployment")
    container = pod["containers"][0]
    env = _env(container)
    assert env["DATABASE_AUTH"] == "password-file" and env["DATABASE_URL"] == APP_URL
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "database-password"]
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath mounts never update
    assert env["DATABASE_PASSWORD_FILE"] == mount["mountPath"] + "/password"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "database-password"]
    assert volume["secret"]["secretName"] == "ledger-app-password"
    assert volume["secret"]["items"] == [{"key": "password", "path": "password"}]


def test_keep_alive_reaches_the_pods() -> None:
    pod = _pod(render(merged(BASE_VALUES, {"http": {"keepAliveSeconds": 120.5}})), "Deployment")
    assert _env(pod["containers"][0])["HTTP_KEEP_ALIVE_SECONDS"] == "120.5"
    default = _pod(render(BASE_VALUES), "Deployment")
    assert _env(default["containers"][0])["HTTP_KEEP_ALIVE_SECONDS"] == "75"


REFUSED = [
    ({"database": {"auth": "kerberos"}}, "auth"),
    (
        {
            "database": {
                "auth": "iam",
                "url": "postgresql://ledger_app:pw@db:5432/ledger",
                "region": "eu-west-1",
            }
        },
        "url",
    ),
    ({"database": {"auth": "iam", "url": APP_URL + "&password=pw", "region": "eu-west-1"}}, "url"),
    ({"database": {"auth": "iam", "region": "eu-west-1"}}, "database.url"),
    ({"database": {"auth": "iam", "url": APP_URL}}, "database.region"),
    ({"database": {"auth": "iam", "url": APP_URL, "region": "Ireland"}}, "region"),
    ({"database": {"auth": "password-file", "url": APP_URL}}, "database.passwordFile.secretName"),
    ({"database": {"auth": "url", "existingSecret": ""}}, "database.existingSecret"),
    (
        {"database": {"auth": "iam", "url": APP_URL, "region": "eu-west-1", "existingSecret": ""}},
        "migrations.database.auth",  # the Job still needs a login: url mode's Secret
    ),
    ({"migrations": {"database": {"auth": "iam"}}}, "auth"),
    (
        {"migrations": {"database": {"auth": "secrets-manager", "url": OWNER_URL}}},
        "migrations.database.secretArn",
    ),
    (
        {"migrations": {"database": {"auth": "secrets-manager", "secretArn": SECRET_ARN}}},
        "migrations.database.url",
    ),
    ({"migrations": {"database": {"secretArn": "rds!db-1"}}}, "secretArn"),
    ({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": 5}}}, "annotations"),
    ({"http": {"keepAliveSeconds": 0}}, "keepAliveSeconds"),
    ({"aws": {"idleTimeoutSeconds": 5000}}, "idleTimeoutSeconds"),
    ({"http": {"keepAliveSeconds": 60}}, "http.keepAliveSeconds (60) must be > aws.idleTimeoutSeconds (60)"),
    ({"http": {"keepAliveSeconds": 5}}, "raise http.keepAliveSeconds above 60"),
]


@pytest.mark.parametrize(("bad", "named"), REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_bad_login_and_keep_alive_values_are_refused_naming_the_value(
    bad: dict[str, Any], named: str
) -> None:
    with pytest.raises(helm_python.HelmError) as error:
        render(merged(BASE_VALUES, bad))
    assert named in str(error.value)


def _keep_alive_from_chart(keep_alive: float, idle: int) -> str:
    values = merged(
        BASE_VALUES, {"http": {"keepAliveSeconds": keep_alive}, "aws": {"idleTimeoutSeconds": idle}}
    )
    try:
        pod = _pod(render(values), "Deployment")
    except helm_python.HelmError as error:
        message = str(error)
        return "refused: " + message[message.index("drain budget: http.keepAliveSeconds") :].strip()
    return str(_env(pod["containers"][0])["HTTP_KEEP_ALIVE_SECONDS"])


def _keep_alive_from_python(keep_alive: float, idle: int) -> str:
    try:
        return f"{check_keep_alive(keep_alive, idle):g}"
    except DrainBudgetError as error:
        return f"refused: {error}"


@settings(max_examples=30, deadline=None)
@given(
    keep_alive=st.one_of(st.integers(1, 400), st.sampled_from([59.5, 60.5, 75.25, 3999.5])),
    idle=st.one_of(st.integers(1, 400), st.sampled_from([59, 60, 61, 4000])),
)
def test_the_chart_and_the_python_keep_alive_rule_agree(keep_alive: float, idle: int) -> None:
    """Same verdict, same value, and word for word the same refusal."""
    assert _keep_alive_from_chart(keep_alive, idle) == _keep_alive_from_python(keep_alive, idle)


@pytest.mark.parametrize(("keep_alive", "idle"), [(60, 60), (61, 60), (75, 60), (60.5, 60), (5, 60)])
def test_the_keep_alive_rule_at_its_edges(keep_alive: float, idle: int) -> None:
    assert _keep_alive_from_chart(keep_alive, idle) == _keep_alive_from_python(keep_alive, idle)


def test_checkov_finds_nothing_in_the_iam_and_password_file_modes() -> None:
    everything = render(merged(BASE_VALUES, IAM)) + render(
        merged(BASE_VALUES, PASSWORD_FILE), name="ledger-green"
    )
    failed, passed = checkov_failures(everything)
    assert failed == []
    assert passed > 50
