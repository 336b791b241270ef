"""`cutover rehearse --faults` on the AWS path, end to end: every fault under live load
(pods signalled, Postgres restarted, a broken build, CI cancelling a release, a human
editing the weights in the console, the Route53 API away, the database password rotated,
a canary failing a share of its requests), each with its own line in the report, and
nothing acknowledged lost across all of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SCENARIOS = [
    "sigterm_pod",
    "sigkill_pod",
    "postgres_restart",
    "broken_release",
    "ci_cancel",
    "out_of_band_writer",
    "route53_unavailable",
    "credentials_rotated",
    "bad_canary",
]
LINE_KEYS = {"scenario", "seconds", "requests", "failed_requests", "outcome", "expected", "as_expected"}


@pytest.fixture(scope="module")
def faults_run() -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, "-m", "cutover", "rehearse", "--short", "--faults", "--json"],
        capture_output=True,
        text=True,
        timeout=840,
        env={**os.environ},
    )
    assert result.stdout, result.stderr[-4000:]
    return result.returncode, json.loads(result.stdout), result.stderr


def _diagnosis(report: dict[str, Any]) -> str:
    """What a CI failure needs: the failing lines, the sticky violations, the totals."""
    failing = [f for f in report.get("faults", []) if not f.get("as_expected")]
    totals = {k: v for k, v in report.items() if k not in ("faults", "traffic_follow", "release", "rollback")}
    return json.dumps(
        {
            "failing_lines": failing,
            "sticky_violation_examples": report.get("sticky_violation_examples"),
            "totals": totals,
        },
        indent=1,
        default=str,
    )


def _line(report: dict[str, Any], scenario: str) -> dict[str, Any]:
    return next(f for f in report["faults"] if f["scenario"] == scenario)


def test_every_fault_ends_as_expected_and_nothing_is_lost(
    faults_run: tuple[int, dict[str, Any], str],
) -> None:
    code, report, progress = faults_run
    diagnosis = _diagnosis(report)
    assert [f["scenario"] for f in report.get("faults", [])] == SCENARIOS, diagnosis
    for line in report["faults"]:
        assert set(line) >= LINE_KEYS, (LINE_KEYS - set(line), diagnosis)
        assert line["as_expected"] is True, diagnosis
        assert line["baseline_after"] == "ok", diagnosis  # blue 100, green stopped, lock free
        assert line["requests"] > 0, diagnosis  # the load ran through every scenario
    assert report["transfers_lost"] == 0, diagnosis
    assert report["operations_given_up"] == 0, diagnosis
    assert report["money_conserved"] is True, diagnosis
    assert report["transfers_acknowledged"] == report["transfers_persisted"], diagnosis
    assert report["sticky_violations"] == 0, diagnosis
    assert report["failed_requests_outside_faults"] == 0, diagnosis
    assert report["processes_left"] == 0, diagnosis
    assert report["passed"] is True and code == 0, diagnosis
    assert "fault: CI cancels" in progress and "tearing down" in progress


def test_pods_and_postgres(faults_run: tuple[int, dict[str, Any], str]) -> None:
    _, report, _ = faults_run
    diagnosis = _diagnosis(report)
    sigterm = _line(report, "sigterm_pod")
    assert sigterm["failed_requests"] == 0 and sigterm["exited_gracefully"] is True, diagnosis
    broken = _line(report, "broken_release")
    assert broken["rolled_back_as_expected"] is True, diagnosis
    assert (broken["exit_code"], broken["served_by_green"]) == (1, 0), diagnosis
    assert broken["traffic_after"] == {"blue": 100, "green": 0}, diagnosis


def test_ci_cancel_exits_130_within_githubs_window_with_traffic_restored(
    faults_run: tuple[int, dict[str, Any], str],
) -> None:
    _, report, _ = faults_run
    line = _line(report, "ci_cancel")
    assert line["signals"] == ["SIGINT"], _diagnosis(report)  # no SIGTERM needed
    assert line["exit_code"] == 130 and line["exit_seconds_after_sigint"] <= 7.5, line
    assert line["traffic_after"] == {"blue": 100, "green": 0} and line["lock_free"] is True, line
    assert line["history"] == "release v2 cancelled", line
    assert line["failed_requests"] == 0, line


def test_a_console_edit_is_never_overwritten(faults_run: tuple[int, dict[str, Any], str]) -> None:
    _, report, _ = faults_run
    line = _line(report, "out_of_band_writer")
    assert line["exit_code"] == 4, line
    assert line["weights_after_release"] == {"blue": 70, "green": 30}, line
    assert "cutover rollback" in line["on_call"], line
    assert line["then"]["rollback"] == "succeeded" and line["failed_requests"] == 0, line


def test_route53_away_ends_in_one_known_state(faults_run: tuple[int, dict[str, Any], str]) -> None:
    _, report, _ = faults_run
    line = _line(report, "route53_unavailable")
    assert line["exit_code"] in (0, 1, 4), line
    assert line["on_call"] and line["end_state"], line
    assert line["dns_answers_during_outage"] > 0, line  # Route53's data plane stayed up


def test_credentials_rotate_under_load(faults_run: tuple[int, dict[str, Any], str]) -> None:
    _, report, _ = faults_run
    line = _line(report, "credentials_rotated")
    assert line["failed_requests"] == 0 and line["new_logins_after_rotation"] > 0, line


def test_a_bad_canary_is_stopped_by_cloudwatch_analysis(faults_run: tuple[int, dict[str, Any], str]) -> None:
    _, report, _ = faults_run
    line = _line(report, "bad_canary")
    assert line["stopped_by_analysis"] is True and line["exit_code"] == 1, line
    assert line["served_by_green"] > 0 and line["green_5xx"] > 0, line
    assert line["published"]["green"]["target_5xx"] > 0, line
