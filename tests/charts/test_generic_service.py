"""charts/ledger as a chart for any service meeting its contract (issue 16): `greeter`, a
service with none of ledger's code, renders from ci/generic-service-values.yaml, and
ledger's defaults still render ledger."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import yaml

from tests.charts.helpers import (
    BASE_VALUES,
    CHART,
    KUBE_VERSIONS,
    NEWEST,
    by_kind,
    checkov_failures,
    merged,
    render,
    validate,
)
from tests.charts.test_chart_testing import render_for

GREETER_FILE = "generic-service-values.yaml"
RELEASE = "greeter-blue"
# ledger's behaviour, spelled out: the values a generic service changes, at ledger's defaults.
LEDGER_EXPLICIT: dict[str, Any] = {
    "args": ["serve"],
    "health": {"livePath": "/health/live", "readyPath": "/health/ready", "startupPath": "/health/startup"},
    "database": {"enabled": True},
    "migrations": {"enabled": True, "args": ["migrate"]},
    "cluster": {"enabled": True},
    "rateLimitPerMinute": 0,
    "trustedProxies": [],
    "logFormat": "json",
    "logLevel": "INFO",
    "env": {},
    "secretEnv": {},
    "networkPolicy": {"extraEgress": []},
    "monitoring": {"serviceMonitor": {"path": "/metrics"}},
}
LEDGER_ONLY_VARIABLES = (
    "CLUSTER_DISCOVERY",
    "CLUSTER_INTERVAL_SECONDS",
    "RATE_LIMIT_PER_MINUTE",
    "TRUSTED_PROXIES",
    "LOG_FORMAT",
    "LOG_LEVEL",
)


def greeter_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / GREETER_FILE).read_text())
    return values


def greeter(extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render(merged(greeter_values(), extra or {}), name=RELEASE, namespace="greeter")


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = app
    return result


def env_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(objects)["env"]}


def egress_ports(objects: list[dict[str, Any]]) -> set[int]:
    return {
        port["port"]
        for policy in by_kind(objects, "NetworkPolicy")
        for rule in policy["spec"]["egress"]
        for port in rule.get("ports", [])
    }


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_greeter_lints_clean_and_renders_valid_objects_on_each_version(version: str) -> None:
    values = greeter_values()
    report = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{version}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 2 = warning, 3 = error
    objects = render_for(values, version, name=RELEASE)
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "TargetGroupBinding"} <= {
        o["kind"] for o in objects
    }
    validate(objects, version)  # strict Kubernetes schemas, and the CRD schemas


def test_greeter_passes_checkov() -> None:
    failed, passed = checkov_failures(render_for(greeter_values(), NEWEST, name=RELEASE))
    assert failed == []
    assert passed > 30


def test_greeter_probes_hit_its_port_and_its_paths() -> None:
    app = container(greeter())
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    probes = {kind: app[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert {kind: (ports[probe["port"]], probe["path"]) for kind, probe in probes.items()} == {
        "startup": (9000, "/startupz"),
        "liveness": (9000, "/livez"),
        "readiness": (9000, "/readyz"),
    }
    assert env_of(greeter())["PORT"]["value"] == "9000"
    assert "args" not in app  # the image's own entrypoint, not `ledger serve`
    (test_pod,) = by_kind(greeter(), "Pod")
    assert test_pod["spec"]["containers"][0]["command"][-1] == "http://greeter-blue.greeter.svc:80/readyz"


def test_greeter_has_no_database_and_none_of_ledgers_settings() -> None:
    objects = greeter()
    env = env_of(objects)
    assert [name for name in env if name.startswith("DATABASE_")] == []
    assert [name for name in env if name in LEDGER_ONLY_VARIABLES] == []
    assert by_kind(objects, "Job") == []
    assert [o["metadata"]["name"] for o in by_kind(objects, "ServiceAccount")] == [RELEASE]  # no -migrate
    assert 5432 not in egress_ports(objects)
    assert [s["metadata"]["name"] for s in by_kind(objects, "Service")] == [RELEASE]  # no headless
    assert not {"PrometheusRule", "ServiceMonitor", "ConfigMap"} & {o["kind"] for o in objects}


def test_greeter_gets_its_env_and_secret_env() -> None:
    env = env_of(greeter())
    assert env["GREETING_STYLE"] == {"name": "GREETING_STYLE", "value": "plain"}
    assert env["API_TOKEN"] == {
        "name": "API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "greeter-token", "key": "token"}},
    }
    for name, value in {"COLOR": "blue", "APP_VERSION": "v0.1.0", "DRAIN_SECONDS": "3"}.items():
        assert env[name]["value"] == value  # the platform's contract stays


def test_greeter_objects_are_named_for_its_release() -> None:
    objects = greeter()
    for obj in objects:
        assert obj["metadata"]["name"].startswith(RELEASE), obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "greeter", obj["metadata"]["name"]
    assert container(objects)["name"] == "greeter"
    (binding,) = by_kind(objects, "TargetGroupBinding")
    assert binding["spec"]["serviceRef"] == {"name": RELEASE, "port": 80}


REFUSED_NAMES = [
    ("env", "PORT", {}),
    ("env", "HTTP_KEEP_ALIVE_SECONDS", {}),
    ("secretEnv", "COLOR", {}),
    ("env", "DATABASE_URL", {}),  # greeter has no database: DATABASE_* stays the chart's
    ("env", "LOG_LEVEL", {"logLevel": "INFO"}),  # set by the chart while logLevel is set
    ("secretEnv", "GREETING_STYLE", {}),  # already in env
]


@pytest.mark.parametrize(
    ("source", "name", "extra"), REFUSED_NAMES, ids=[f"{s}.{n}" for s, n, _ in REFUSED_NAMES]
)
def test_a_variable_the_chart_sets_is_refused_naming_it(
    source: str, name: str, extra: dict[str, Any]
) -> None:
    value: Any = "x" if source == "env" else {"secretName": "s", "key": "k"}
    with pytest.raises(helm_python.HelmError) as error:
        greeter(merged(extra, {source: {name: value}}))
    assert f"{source}.{name}: " in str(error.value)


def test_a_ledger_variable_left_unset_is_free_for_env() -> None:
    assert env_of(greeter({"env": {"LOG_LEVEL": "debug"}}))["LOG_LEVEL"]["value"] == "debug"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"env": {"bad-name": "x"}}, "at '/env': additional properties 'bad-name' not allowed"),
        ({"env": {"9LIVES": "x"}}, "at '/env': additional properties '9LIVES' not allowed"),
        ({"secretEnv": {"A.B": {"secretName": "s", "key": "k"}}}, "at '/secretEnv': additional properties"),
        ({"env": {"RETRIES": 3}}, "at '/env/RETRIES': got number, want string"),
        ({"secretEnv": {"TOKEN": {"secretName": "s"}}}, "at '/secretEnv/TOKEN': missing property 'key'"),
        ({"health": {"readyPath": "readyz"}}, "at '/health/readyPath'"),
        ({"health": {"livePath": "/live z"}}, "at '/health/livePath'"),
    ],
    ids=["dash", "digit-first", "dot-in-secret-env", "not-a-string", "no-key", "relative-path", "space"],
)
def test_bad_names_and_paths_are_refused_by_the_schema(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as error:
        greeter(bad)
    assert "don't meet the specifications of the schema" in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize("auth", ["url", "iam", "password-file"])
def test_database_disabled_needs_no_secret_in_any_login_mode(auth: str) -> None:
    values = {"image": {"tag": "v1.2.3"}, "database": {"enabled": False, "auth": auth}}
    objects = render(values)  # no existingSecret, url, region or passwordFile
    env = env_of(objects)
    assert [name for name in env if name.startswith("DATABASE_")] == []
    assert by_kind(objects, "Job") == [] and 5432 not in egress_ports(objects)
    assert 443 not in egress_ports(objects)  # no STS egress for iam either
    (deployment,) = by_kind(objects, "Deployment")
    assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == ["tmp"]


def test_the_generic_knobs_point_elsewhere() -> None:
    api = {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    objects = render(
        merged(
            BASE_VALUES,
            {
                "migrations": {"args": ["db", "upgrade"]},
                "networkPolicy": {"extraEgress": [api]},
                "monitoring": {"serviceMonitor": {"enabled": True, "path": "/internal/metrics"}},
                "logFormat": "text",
            },
        )
    )
    (job,) = by_kind(objects, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    (pods_policy,) = [p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "ledger-blue"]
    assert pods_policy["spec"]["egress"][-1] == api
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/internal/metrics"
    assert env_of(objects)["LOG_FORMAT"]["value"] == "text"


def test_ledger_values_spelled_out_render_exactly_ledgers_defaults() -> None:
    """The new values at ledger's defaults change nothing: ledger keeps its database, its
    migration Job, its paths and its own settings (the byte-for-byte comparison with the
    chart before issue 16 is in the issue's report)."""
    objects = render(merged(BASE_VALUES, LEDGER_EXPLICIT))
    assert objects == render(BASE_VALUES)
    env = env_of(objects)
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "ledger-database",
        "key": "DATABASE_URL",
    }
    assert set(LEDGER_ONLY_VARIABLES) <= env.keys()
    (job,) = by_kind(objects, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    app = container(objects)
    assert app["name"] == "ledger" and app["args"] == ["serve"]
    assert [app[f"{k}Probe"]["httpGet"]["path"] for k in ("startup", "liveness", "readiness")] == [
        "/health/startup",
        "/health/live",
        "/health/ready",
    ]
    assert 5432 in egress_ports(objects)


def test_a_retired_color_has_no_autoscaler_to_keep_a_pod_running() -> None:
    """`cutover retire` sets replicaCount 0; an HPA (minReplicas at least 1) would scale the
    Deployment back up to one pod, on a color that takes no traffic."""
    retired = greeter({"replicaCount": 0, "autoscaling": {"enabled": True, "maxReplicas": 6}})
    assert not by_kind(retired, "HorizontalPodAutoscaler")
    (deployment,) = by_kind(retired, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    running = greeter({"replicaCount": 2, "autoscaling": {"enabled": True, "maxReplicas": 6}})
    (hpa,) = by_kind(running, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (deployment,) = by_kind(running, "Deployment")
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
