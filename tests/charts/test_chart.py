"""charts/ledger rendered by real Helm, validated strictly, scanned by checkov."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import helm_python
import pytest

from tests.charts.helpers import (
    BASE_VALUES,
    CHART,
    KUBE_VERSIONS,
    NATIVE_SLEEP_SINCE,
    TARGET_GROUP,
    by_kind,
    checkov_failures,
    merged,
    notes,
    render,
    validate,
)

MATRIX = [
    {
        "color": color,
        "replicaCount": replicas,
        "aws": {"targetGroupArn": TARGET_GROUP if tgb else ""},
        "autoscaling": {"enabled": hpa},
        "monitoring": {"serviceMonitor": {"enabled": monitoring}, "dashboard": {"enabled": monitoring}},
    }
    for color, replicas, tgb, hpa, monitoring in itertools.product(
        ("blue", "green"), (1, 4), (False, True), (False, True), (False, True)
    )
]


def ids(values: dict[str, Any]) -> str:
    return (
        f"{values['color']}-r{values['replicaCount']}"
        f"{'-tgb' if values['aws']['targetGroupArn'] else ''}"
        f"{'-hpa' if values['autoscaling']['enabled'] else ''}"
        f"{'-mon' if values['monitoring']['serviceMonitor']['enabled'] else ''}"
    )


@pytest.mark.parametrize("values", MATRIX, ids=ids)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_is_valid_kubernetes(values: dict[str, Any], version: str) -> None:
    major, minor = (int(p) for p in version.split(".")[:2])
    native = (major, minor) >= NATIVE_SLEEP_SINCE
    objects = render(
        merged(BASE_VALUES, values, {"preStop": {"nativeSleep": native}}), name=f"ledger-{values['color']}"
    )
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy", "Job"} <= kinds
    assert ("TargetGroupBinding" in kinds) == bool(values["aws"]["targetGroupArn"])
    assert ("HorizontalPodAutoscaler" in kinds) == values["autoscaling"]["enabled"]
    assert ("ServiceMonitor" in kinds) == values["monitoring"]["serviceMonitor"]["enabled"]
    validate(objects, version)


def test_checkov_finds_nothing_on_any_rendered_set(tmp_path: Path) -> None:
    everything = []
    for values in MATRIX:
        everything += render(merged(BASE_VALUES, values), name=f"ledger-{values['color']}")
    failed, passed = checkov_failures(everything)
    assert failed == []
    assert passed > 100


def test_every_checkov_skip_in_the_chart_has_a_reason() -> None:
    for template in (CHART / "templates").glob("*.yaml"):
        for line in template.read_text().splitlines():
            if "checkov.io/skip" in line:
                check, _, reason = line.split(":", 1)[1].strip().partition("=")
                assert check.startswith("CKV") and len(reason) > 30, f"{template.name}: {line}"


@pytest.mark.parametrize(
    "values", [BASE_VALUES, merged(BASE_VALUES, MATRIX[-1])], ids=["defaults", "everything"]
)
def test_helm_lint_has_no_errors(values: dict[str, Any]) -> None:
    result = helm_python.lint(str(CHART), values, strict=False)
    assert result["errors"] == []
    assert not [m for m in result["messages"] if m["severity"] >= 3]  # 3 = error in Helm's lint levels


def test_headless_service_and_selectors() -> None:
    objects = render(merged(BASE_VALUES, {"color": "green"}), name="ledger-green", namespace="prod")
    (deployment,) = by_kind(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    headless = services["ledger-green-headless"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        services["ledger-green"]["spec"]["selector"],
        headless["spec"]["selector"],
        by_kind(objects, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"],
        by_kind(objects, "NetworkPolicy")[0]["spec"]["podSelector"]["matchLabels"],
    ):
        assert selector["color"] == "green"
        assert selector.items() <= pod_labels.items()
    for label in (
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
    ):
        assert label in deployment["metadata"]["labels"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CLUSTER_DISCOVERY"]["value"] == "dns:ledger-green-headless.prod.svc.cluster.local"
    assert env["COLOR"]["value"] == "green" and env["APP_VERSION"]["value"] == "v1.2.3"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "ledger-database",
        "key": "DATABASE_URL",
    }
    assert env["INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_probes_hit_the_real_endpoints_and_the_pod_is_locked_down() -> None:
    (deployment,) = by_kind(render(BASE_VALUES), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/health/startup"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"] and security["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # never below the PDB
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 15}}
    legacy = by_kind(render(merged(BASE_VALUES, {"preStop": {"nativeSleep": False}})), "Deployment")[0]
    assert legacy["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"] == {
        "exec": {"command": ["sleep", "15"]}
    }


def test_migration_job_is_a_bounded_pre_install_hook() -> None:
    (job,) = by_kind(render(BASE_VALUES), "Job")
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "hook-succeeded" in hooks["helm.sh/hook-delete-policy"]
    assert job["spec"]["backoffLimit"] == 3 and job["spec"]["activeDeadlineSeconds"] == 300
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_target_group_binding_and_notes_tell_about_readiness_gates() -> None:
    values = merged(BASE_VALUES, {"aws": {"targetGroupArn": TARGET_GROUP}})
    (binding,) = by_kind(render(values), "TargetGroupBinding")
    assert binding["spec"] == {
        "targetGroupARN": TARGET_GROUP,
        "targetType": "ip",
        "serviceRef": {"name": "ledger-blue", "port": 80},
    }
    assert "elbv2.k8s.aws/pod-readiness-gate-inject=enabled" in notes(values)


def _leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("resources",):
            keys += _leaves(value, path + ".")
        else:
            keys.append(path)
    return keys


def test_the_readme_lists_every_value() -> None:
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [
        key
        for key in _leaves(values)
        if f"`{key}`" not in readme and key not in ("nodeSelector", "tolerations", "affinity")
    ]
    assert missing == []
