"""Render charts/ledger with real Helm and check what it produces, for real.

Used by the chart tests and by the infra tests (on the values the Pulumi program computes).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

from tests.tools import checkov

CHART = Path(__file__).resolve().parents[2] / "charts" / "ledger"
NEWEST = kubernetes_validate.latest_version()
# Oldest first. Before 1.30 the lifecycle `sleep` action does not exist: those renders use
# preStop.nativeSleep=false (exec sleep), as the chart's README says.
KUBE_VERSIONS = ("1.29.0", "1.33.0", NEWEST)
NATIVE_SLEEP_SINCE = (1, 30)

BASE_VALUES: dict[str, Any] = {
    "image": {"tag": "v1.2.3"},
    "database": {"existingSecret": "ledger-database"},
}
TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/ledger-blue/0123456789abcdef"


def _custom_resource(spec: dict[str, Any]) -> dict[str, Any]:
    """The schema of a custom resource whose `spec` has the schema given."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"spec": spec},
    }


# The custom resources the chart may render, checked against the fields their CRDs define
# (aws-load-balancer-controller's TargetGroupBinding v1beta1, prometheus-operator's
# ServiceMonitor and PrometheusRule v1): required fields and enums, and no field the CRD
# does not know.
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding"): _custom_resource(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["serviceRef", "targetGroupARN"],
            "properties": {
                "targetGroupARN": {"type": "string", "pattern": "^arn:aws[a-z-]*:elasticloadbalancing:"},
                "targetType": {"enum": ["instance", "ip"]},
                "ipAddressType": {"enum": ["ipv4", "ipv6"]},
                "serviceRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "port"],
                    "properties": {"name": {"type": "string"}, "port": {"type": ["integer", "string"]}},
                },
                "networking": {"type": "object"},
                "nodeSelector": {"type": "object"},
            },
        }
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _custom_resource(
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        }
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _custom_resource(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": {
                                            "type": "string",
                                            "pattern": "^(0|([0-9]+(ms|s|m|h|d|w|y))+)$",
                                        },
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        }
    ),
}


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for layer in layers:
        result = _merge(result, layer)
    return result


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def render(
    values: dict[str, Any], name: str = "ledger-blue", namespace: str = "ledger"
) -> list[dict[str, Any]]:
    """Every object the chart renders (hooks included), parsed."""
    rendered = helm_python.Chart.load(str(CHART)).render(values, name=name, namespace=namespace)
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def notes(values: dict[str, Any], name: str = "ledger-blue", namespace: str = "ledger") -> str:
    rendered = helm_python.Chart.load(str(CHART)).render(values, name=name, namespace=namespace)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def validate(objects: list[dict[str, Any]], version: str) -> None:
    """Strict schema validation: Kubernetes' own schemas, and the CRD fields for the rest."""
    for obj in objects:
        crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if crd is not None:
            jsonschema.validate(obj, crd)
        else:
            kubernetes_validate.validate(obj, version, strict=True)


def checkov_failures(objects: list[dict[str, Any]]) -> tuple[list[str], int]:
    """checkov's kubernetes framework over the rendered objects: (failed check ids, passed)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "rendered.yaml").write_text(yaml.safe_dump_all(objects))
        report = checkov(["-d", tmp], "kubernetes")
    failed = [f"{c['check_id']} {c['resource']}" for c in report.get("results", {}).get("failed_checks", [])]
    return failed, int(report.get("summary", {}).get("passed", 0))
