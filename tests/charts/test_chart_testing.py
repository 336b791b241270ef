"""The chart as its ecosystem's tools use it: chart-testing's `ci/*-values.yaml` files lint
clean and render valid objects, `helm test` checks a release answers /health/ready, and the
preStop action follows the cluster's version (`.Capabilities.KubeVersion`)."""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest
import yaml
from helm_python import _native

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

CI_FILES = ("default-values.yaml", "iam-values.yaml", "password-file-values.yaml", "monitoring-values.yaml")
SLEEP = {"sleep": {"seconds": 15}}
EXEC = {"exec": {"command": ["sleep", "15"]}}


def render_for(values: dict[str, Any], kube_version: str, name: str = "ledger-blue") -> list[dict[str, Any]]:
    """Every object the chart renders for a cluster of `kube_version` (`helm template
    --kube-version`). helm_python's Chart.render does not expose the option its C library
    takes, so this passes it to the same call."""
    chart = helm_python.Chart.load(str(CHART))
    options = {"name": name, "namespace": "ledger", "kube_version": kube_version}
    rendered: dict[str, str] = json.loads(
        _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options))
    )
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith("NOTES.txt"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def ci_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / name).read_text())
    return values


def pre_stop(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    handler: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]
    return handler


def test_the_ci_directory_holds_the_values_users_start_from() -> None:
    assert {p.name for p in (CHART / "ci").glob("*-values.yaml")} >= set(CI_FILES)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", CI_FILES)
def test_each_ci_values_file_lints_clean_and_renders_valid_objects(name: str, version: str) -> None:
    values = ci_values(name)
    report = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{version}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 2 = warning, 3 = error
    objects = render_for(values, version)
    assert by_kind(objects, "Deployment") and by_kind(objects, "Pod")  # the app and its test
    validate(objects, version)


def test_the_ci_values_files_pass_checkov() -> None:
    everything = [obj for name in CI_FILES for obj in render_for(ci_values(name), NEWEST)]
    failed, passed = checkov_failures(everything)
    assert failed == []
    assert passed > 50


def test_the_ci_values_files_cover_each_login_and_monitoring() -> None:
    def deployment_env(name: str) -> dict[str, Any]:
        (deployment,) = by_kind(render(ci_values(name)), "Deployment")
        return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert "DATABASE_AUTH" not in deployment_env("default-values.yaml")
    assert deployment_env("iam-values.yaml")["DATABASE_AUTH"]["value"] == "iam"
    assert deployment_env("password-file-values.yaml")["DATABASE_AUTH"]["value"] == "password-file"
    assert by_kind(render(ci_values("iam-values.yaml")), "TargetGroupBinding")
    assert by_kind(render(ci_values("monitoring-values.yaml")), "ServiceMonitor")


def _test_objects(values: dict[str, Any], name: str = "ledger-blue") -> list[dict[str, Any]]:
    return [
        o
        for o in render(values, name=name)
        if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]


def test_helm_test_gets_health_ready_through_the_service_with_the_app_image() -> None:
    values = merged(BASE_VALUES, {"color": "green", "service": {"port": 8080}})
    objects = render(values, name="ledger-green")
    (pod,) = [o for o in _test_objects(values, "ledger-green") if o["kind"] == "Pod"]
    (deployment,) = by_kind(objects, "Deployment")
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert spec["restartPolicy"] == "Never"
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["command"][:2] == ["python", "-c"]
    assert container["command"][-1] == "http://ledger-green.ledger.svc:8080/health/ready"
    (service,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "ledger-green"]
    assert service["spec"]["ports"][0]["port"] == 8080
    # Never a backend of the Services: it lacks the pods' selector labels.
    assert not service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_the_test_pod_is_hardened_like_the_app_pods() -> None:
    (pod,) = [o for o in _test_objects(BASE_VALUES) if o["kind"] == "Pod"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True and security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    failed, _ = checkov_failures(_test_objects(BASE_VALUES))
    assert failed == []


def test_the_network_policies_let_the_test_pod_reach_the_app_port() -> None:
    objects = render(BASE_VALUES)
    (pod,) = [o for o in _test_objects(BASE_VALUES) if o["kind"] == "Pod"]
    labels = pod["metadata"]["labels"]
    policies = by_kind(objects, "NetworkPolicy")
    app = next(p for p in policies if p["metadata"]["name"] == "ledger-blue")
    # The pods' policy admits the app port from any source (no `from`): the test pod included.
    assert {"ports": [{"port": 8000, "protocol": "TCP"}]} in app["spec"]["ingress"]
    # The test pod's own policy (a test hook too): egress to DNS and the app pods' port only.
    (own,) = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
    assert own["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert own["spec"]["ingress"] == []
    to_app = [rule for rule in own["spec"]["egress"] if rule.get("to")]
    assert to_app == [
        {
            "ports": [{"port": 8000, "protocol": "TCP"}],
            "to": [{"podSelector": {"matchLabels": app["spec"]["podSelector"]["matchLabels"]}}],
        }
    ]
    no_policies = merged(BASE_VALUES, {"networkPolicy": {"enabled": False}})
    assert [o["kind"] for o in _test_objects(no_policies)] == ["Pod"]


def test_tests_enabled_false_renders_no_test_hook() -> None:
    assert _test_objects(merged(BASE_VALUES, {"tests": {"enabled": False}})) == []


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.29.0", EXEC),
        ("1.29.15", EXEC),
        ("1.30.0", SLEEP),
        ("1.30.2-eks-1552ad0", SLEEP),
        ("1.33.0", SLEEP),
        ("1.37.0", SLEEP),
    ],
)
def test_native_sleep_auto_follows_the_kube_version(version: str, expected: dict[str, Any]) -> None:
    assert pre_stop(render_for(BASE_VALUES, version)) == expected  # the default is auto
    assert (
        pre_stop(render_for(merged(BASE_VALUES, {"preStop": {"nativeSleep": "auto"}}), version)) == expected
    )


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
@pytest.mark.parametrize(("native", "expected"), [(True, SLEEP), (False, EXEC)])
def test_native_sleep_true_or_false_overrides_the_version(
    native: bool, expected: dict[str, Any], version: str
) -> None:
    assert (
        pre_stop(render_for(merged(BASE_VALUES, {"preStop": {"nativeSleep": native}}), version)) == expected
    )


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_the_default_values_validate_on_each_version_without_a_switch(version: str) -> None:
    validate(render_for(BASE_VALUES, version), version)


@pytest.mark.parametrize("bad", ["yes", "on", 1])
def test_native_sleep_refuses_anything_but_auto_true_false(bad: object) -> None:
    with pytest.raises(helm_python.HelmError, match="nativeSleep"):
        render(merged(BASE_VALUES, {"preStop": {"nativeSleep": bad}}))


def test_every_checkov_skip_in_the_test_hooks_has_a_reason() -> None:
    skips = [
        line.split(":", 1)[1].strip()
        for template in (CHART / "templates" / "tests").glob("*.yaml")
        for line in template.read_text().splitlines()
        if "checkov.io/skip" in line
    ]
    assert skips
    for skip in skips:
        check, _, reason = skip.partition("=")
        assert check.startswith("CKV") and len(reason) > 30, skip
