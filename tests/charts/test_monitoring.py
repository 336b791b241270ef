"""Metrics, alerts and the dashboard as their users' tools see them.

- The ServiceMonitor selects the ClusterIP Service alone and copies its `color` label onto
  every series (`targetLabels`).
- The PrometheusRule, rendered by real Helm, passes `promtool check rules`, and
  `promtool test rules` shows each alert firing on series that should fire it and silent on
  series that should not (and on another color's series).
- Every dashboard query runs against a real Prometheus scraping a real ledger, with the
  `color` target label the ServiceMonitor adds, and returns series grouped by `color`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import httpx
import pytest
import yaml

from cutover.local.database import migrate_database
from cutover.local.ledger_process import LedgerProcess
from cutover.local.postgres import EmbeddedPostgres
from tests.charts.helpers import BASE_VALUES, CHART, NEWEST, by_kind, merged, render, validate
from tests.pipelines.metrics_fixtures import INSTALL, PROMETHEUS, PrometheusServer

ROOT = CHART.parents[1]
PROMTOOL = os.environ.get("PROMTOOL_BIN") or shutil.which("promtool") or "/usr/bin/promtool"
ALERTS = (
    "LedgerHighErrorRate",
    "LedgerHighLatencyP99",
    "LedgerReadinessFlapping",
    "LedgerFeedDegraded",
    "LedgerDatabasePoolSaturated",
    "LedgerColorServingWhileUnhealthy",
    "LedgerColorDown",
)
SERVICE_MONITOR = {"monitoring": {"serviceMonitor": {"enabled": True}}}
DASHBOARD = {"monitoring": {"dashboard": {"enabled": True}}}
MONITORING = {
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"{PROMTOOL} is missing: install Debian's prometheus package ({INSTALL})")
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def rule_groups(color: str = "blue", values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rule groups of the PrometheusRule the chart renders for `color`."""
    objects = render(merged(BASE_VALUES, MONITORING, {"color": color}, values or {}), name=f"ledger-{color}")
    (rule,) = by_kind(objects, "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def rules_by_alert(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", title)))
    return anchors


# --- the ServiceMonitor ------------------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("color", ["blue", "green"])
def test_the_service_monitor_selects_the_clusterip_service_alone(color: str) -> None:
    objects = render(merged(BASE_VALUES, SERVICE_MONITOR, {"color": color}), name=f"ledger-{color}")
    (monitor,) = by_kind(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    chosen = [s for s in by_kind(objects, "Service") if selects(selector, s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in chosen] == [f"ledger-{color}"]
    (service,) = chosen
    assert service["spec"]["type"] == "ClusterIP" and "publishNotReadyAddresses" not in service["spec"]
    # Every series gets the Service's `color` label, the one the dashboard and alerts group by.
    assert monitor["spec"]["targetLabels"] == ["color"]
    assert service["metadata"]["labels"]["color"] == color
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service["spec"]["ports"][0]["name"]]


def test_the_headless_service_still_discovers_every_pod() -> None:
    objects = render(merged(BASE_VALUES, SERVICE_MONITOR))
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    headless = services["ledger-blue-headless"]
    assert headless["metadata"]["labels"]["app.kubernetes.io/component"] == "discovery"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"] == services["ledger-blue"]["spec"]["selector"]


# --- the PrometheusRule ------------------------------------------------------------------


def test_the_prometheus_rule_is_rendered_only_when_enabled_and_is_well_formed() -> None:
    assert by_kind(render(BASE_VALUES), "PrometheusRule") == []
    objects = render(
        merged(BASE_VALUES, MONITORING, {"monitoring": {"prometheusRule": {"labels": {"release": "kps"}}}})
    )
    (rule,) = by_kind(objects, "PrometheusRule")
    validate([rule], NEWEST)  # the fields prometheus-operator's CRD defines
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["metadata"]["namespace"] == "ledger"


def test_helm_lint_passes_with_every_monitoring_object() -> None:
    result = helm_python.lint(str(CHART), merged(BASE_VALUES, MONITORING), strict=False)
    assert result["errors"] == []
    assert not [m for m in result["messages"] if m["severity"] >= 3]  # 3 = error


def test_every_alert_has_severity_for_summary_description_and_a_runbook_anchor_that_exists() -> None:
    rules = rules_by_alert(rule_groups())
    assert sorted(rules) == sorted(ALERTS)
    anchors = github_anchors((ROOT / "docs" / "runbooks" / "incident.md").read_text())
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert re.fullmatch(r"[0-9]+m", rule["for"]), name
        assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys(), name
        assert "$labels.color" in rule["annotations"]["summary"], name
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/runbooks/incident.md" and anchor in anchors, (name, anchor)
        # Scoped to this release's color, and grouped by it.
        assert 'color="blue"' in rule["expr"] and "by (color" in rule["expr"], name


def test_thresholds_are_values() -> None:
    values = {
        "monitoring": {
            "prometheusRule": {
                "errorRate": {"ratio": 0.2, "for": "7m"},
                "latencyP99": {"seconds": 2.5},
                "readinessFlapping": {"changes": 9, "window": "30m"},
                "databasePoolSaturated": {"ratio": 0.75},
                "servingWhileUnhealthy": {"readyRatio": 0.25},
                "runbookUrl": "https://example.org/incident.md",
            }
        }
    }
    rules = rules_by_alert(rule_groups(values=values))
    assert (
        rules["LedgerHighErrorRate"]["expr"].endswith("> 0.2") and rules["LedgerHighErrorRate"]["for"] == "7m"
    )
    assert rules["LedgerHighLatencyP99"]["expr"].endswith("> 2.5")
    assert "[30m]" in rules["LedgerReadinessFlapping"]["expr"]
    assert rules["LedgerReadinessFlapping"]["expr"].endswith(">= 9")
    assert rules["LedgerDatabasePoolSaturated"]["expr"].endswith(">= 0.75")
    assert "< 0.25" in rules["LedgerColorServingWhileUnhealthy"]["expr"]
    for rule in rules.values():
        assert rule["annotations"]["runbook_url"].startswith("https://example.org/incident.md#")


def test_promtool_check_rules_accepts_the_rendered_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


# Each alert: series that fire it (and the labels/summary it fires with), series that must
# not. Series are per minute; `instance` is a pod. Probes are mixed into the silent cases:
# they are never user requests.
def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    base = {"namespace": "ledger", "color": "blue", "job": "ledger-blue", "instance": "10.0.0.1:8000"}
    text = ", ".join(f'{k}="{v}"' for k, v in {**base, **labels}.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def requests(
    values: str, route: str = "/accounts", status: str = "201", method: str = "POST"
) -> dict[str, str]:
    return series("ledger_http_requests_total", values, method=method, route=route, status=status)


def buckets(le_to_values: dict[str, str], route: str = "/accounts", **labels: str) -> list[dict[str, str]]:
    return [
        series("ledger_http_request_duration_seconds_bucket", v, method="POST", route=route, le=le, **labels)
        for le, v in le_to_values.items()
    ]


def ready(values: str, instance: str = "10.0.0.1:8000") -> dict[str, str]:
    return series("ledger_ready", values, instance=instance)


@dataclass(frozen=True)
class Case:
    alert: str
    eval_time: str
    firing: list[dict[str, str]]
    silent: list[dict[str, str]]
    labels: dict[str, str]  # the firing alert's labels (besides alertname)
    summary: str  # its rendered summary


POD = {"color": "blue", "instance": "10.0.0.1:8000"}
CASES = [
    Case(
        "LedgerHighErrorRate",
        "15m",
        firing=[requests("0+60x20"), requests("0+6x20", status="500")],  # 6/66 = 9% > 5%
        silent=[
            requests("0+60x20"),
            requests("0+2x20", status="503"),  # 2/62 = 3% < 5%
            requests("0+60x20", route="/health/ready", method="GET", status="503"),  # probes
        ],
        labels={"color": "blue", "severity": "critical"},
        summary="ledger blue: 9.091% of requests answered 5xx",
    ),
    Case(
        "LedgerHighLatencyP99",
        "20m",
        firing=buckets({"0.25": "0x30", "1.0": "0x30", "2.5": "0+60x30", "+Inf": "0+60x30"}),
        silent=[
            *buckets({"0.25": "0+60x30", "1.0": "0+60x30", "2.5": "0+60x30", "+Inf": "0+60x30"}),
            *buckets(
                {"0.25": "0x30", "1.0": "0x30", "2.5": "0+6x30", "+Inf": "0+6x30"}, route="/health/ready"
            ),
        ],
        labels={"color": "blue", "severity": "warning"},
        summary="ledger blue: p99 latency 2.485s",
    ),
    Case(
        "LedgerReadinessFlapping",
        "20m",
        firing=[ready("1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1")],  # 15 changes in 15m
        silent=[ready("1x10 0x14")],  # one drain: a single change
        labels={**POD, "severity": "warning"},
        summary="ledger blue: 10.0.0.1:8000 changed readiness 15 times",
    ),
    Case(
        "LedgerFeedDegraded",
        "20m",
        firing=[series("ledger_feed_connected", "1x5 0x20")],  # down since 6m
        silent=[series("ledger_feed_connected", "1x17 0x2 1x5")],  # down 2m at 20m: pending only
        labels={**POD, "severity": "warning"},
        summary="ledger blue: 10.0.0.1:8000's live feed is degraded",
    ),
    Case(
        "LedgerDatabasePoolSaturated",
        "15m",
        firing=[
            series("ledger_db_pool_connections", "10x20", state="in_use"),
            series("ledger_db_pool_connections", "0x20", state="idle"),
            series("ledger_db_pool_connections", "10x20", state="max"),
        ],
        silent=[
            series("ledger_db_pool_connections", "5x20", state="in_use"),
            series("ledger_db_pool_connections", "5x20", state="idle"),
            series("ledger_db_pool_connections", "10x20", state="max"),
        ],
        labels={**POD, "severity": "warning"},
        summary="ledger blue: 10.0.0.1:8000 uses 100% of its database pool",
    ),
    Case(
        "LedgerColorServingWhileUnhealthy",
        "15m",
        firing=[
            ready("0x20"),
            ready("0x20", instance="10.0.0.2:8000"),
            requests("0+60x20"),
        ],
        silent=[  # not ready and not live yet: only probes reach it
            ready("0x20"),
            ready("0x20", instance="10.0.0.2:8000"),
            requests("0+60x20", route="/health/ready", method="GET", status="503"),
        ],
        labels={"color": "blue", "severity": "critical"},
        summary="ledger blue takes traffic with 0% of its pods ready",
    ),
    Case(
        "LedgerColorDown",
        "10m",
        firing=[series("up", "1x3 0x10"), series("up", "1x2 0x10", instance="10.0.0.2:8000")],
        silent=[  # one pod of two down: the color still answers (other alerts cover it)
            series("up", "1x3 0x10"),
            series("up", "1x13", instance="10.0.0.2:8000"),
        ],
        labels={"color": "blue", "severity": "critical"},
        summary="ledger blue: no pod answers its metrics scrape",
    ),
]


def recolored(items: list[dict[str, str]], color: str) -> list[dict[str, str]]:
    return [{**s, "series": s["series"].replace('color="blue"', f'color="{color}"')} for s in items]


def promtool_tests(case: Case, rule: dict[str, Any]) -> dict[str, Any]:
    """A `promtool test rules` file: the firing case, the silent case, and the firing series
    under the other color (the blue release's rules must not see green)."""
    expected = {
        "exp_labels": case.labels,
        "exp_annotations": {
            "summary": case.summary,
            "description": rule["annotations"]["description"],
            "runbook_url": rule["annotations"]["runbook_url"],
        },
    }

    def test(items: list[dict[str, str]], alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": items,
            "alert_rule_test": [{"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": alerts}],
        }

    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            test(case.firing, [expected]),
            test(case.silent, []),
            test(recolored(case.firing, "green"), []),
        ],
    }


def run_promtool_tests(tmp_path: Path, tests: dict[str, Any], groups: list[dict[str, Any]]) -> str:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", tmp_path / "tests.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize("case", CASES, ids=[c.alert for c in CASES])
def test_each_alert_fires_on_its_series_and_stays_silent_otherwise(case: Case, tmp_path: Path) -> None:
    groups = rule_groups()
    rule = rules_by_alert(groups)[case.alert]
    output = run_promtool_tests(tmp_path, promtool_tests(case, rule), groups)
    assert "SUCCESS" in output


def test_every_alert_has_a_case() -> None:
    assert sorted(c.alert for c in CASES) == sorted(ALERTS)


def test_promtool_reports_an_alert_that_does_not_fire_as_expected(tmp_path: Path) -> None:
    """The harness can fail: the silent series expected to fire is a failed promtool test."""
    case = CASES[0]
    groups = rule_groups()
    tests = promtool_tests(case, rules_by_alert(groups)[case.alert])
    tests["tests"] = [{**tests["tests"][1], "alert_rule_test": tests["tests"][0]["alert_rule_test"]}]
    with pytest.raises(AssertionError, match="FAILED"):
        run_promtool_tests(tmp_path, tests, groups)


# --- the dashboard against a real Prometheus scraping a real ledger ------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((CHART / "dashboards" / "ledger.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_configmap_carries_the_dashboard() -> None:
    (config_map,) = [
        o for o in by_kind(render(merged(BASE_VALUES, DASHBOARD)), "ConfigMap") if "ledger.json" in o["data"]
    ]
    assert json.loads(config_map["data"]["ledger.json"]) == json.loads(
        (CHART / "dashboards" / "ledger.json").read_text()
    )
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_every_dashboard_panel_groups_by_color() -> None:
    for title, expr in dashboard_queries():
        assert re.search(r"by \([^)]*\bcolor\b", expr), (title, expr)


def _traffic(client: httpx.Client) -> None:
    """Accounts, transfers (committed and refused) and reads: every panel's series exist."""

    def account(balance: int) -> str:
        answer = client.post("/accounts", json={"name": "a", "currency": "EUR", "opening_balance": balance})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    source, target = account(100), account(0)
    for amount in (10, 1000):  # committed, then insufficient funds
        answer = client.post(
            "/transfers",
            json={"from_account_id": source, "to_account_id": target, "amount": amount},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert answer.status_code in (201, 409, 422), answer.text
    assert client.get(f"/accounts/{source}").status_code == 200


@pytest.fixture(scope="module")
def scraped(
    postgres: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """One real ledger, scraped every second by a real Prometheus with `color="blue"` on its
    target (what the ServiceMonitor's targetLabels add), after some traffic."""
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"{PROMETHEUS} is missing: install Debian's prometheus package ({INSTALL})")
    workdir = tmp_path_factory.mktemp("monitoring")
    url = postgres.create_database(f"mon_{uuid.uuid4().hex[:10]}")
    migrate_database(url)
    env = {"DATABASE_URL": url, "COLOR": "blue", "LOG_FORMAT": "json", "INSTANCE_ID": "mon-blue"}
    process = LedgerProcess(env, workdir / "ledger.log").start(timeout=30)
    prometheus = PrometheusServer(workdir, {"blue": f"127.0.0.1:{process.port}"})
    try:
        prometheus.start()
        prometheus.wait_for('up{color="blue"} == 1')
        with httpx.Client(base_url=process.url, timeout=5.0) as client:
            _traffic(client)  # first values (a counter's first sample is no rate yet)
            prometheus.wait_scraped(time.time(), scrapes=2)
            _traffic(client)
        prometheus.wait_scraped(time.time(), scrapes=2)
        yield prometheus
    finally:
        prometheus.stop()
        process.kill()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("title, expr", dashboard_queries(), ids=[t for t, _ in dashboard_queries()])
def test_each_dashboard_query_returns_series_by_color(
    scraped: PrometheusServer, title: str, expr: str
) -> None:
    result = scraped.query(expr)  # a query that does not parse is an error answer
    assert result, f"{title}: {expr} returned nothing"
    for sample in result:
        metric = sample["metric"]
        assert isinstance(metric, dict) and metric.get("color") == "blue", (title, sample)
