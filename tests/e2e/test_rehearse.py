"""The rehearsal end to end, as `make demo` runs it (shorter windows): real Postgres,
real ledger processes, real Envoy, the real release code, live load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

CONTRACT = {
    "requests",
    "failed_requests",
    "served_by",
    "sticky_violations",
    "transfers_acknowledged",
    "transfers_persisted",
    "money_conserved",
    "release",
    "rollback",
}  # in every report (docs/contracts.md documents them: tests/test_contracts_doc.py)
FAULTS_CONTRACT = {"faults", "transfers_lost"}  # added by --faults


def rehearse(*flags: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, "-m", "cutover", "rehearse", "--short", "--json", *flags],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def plain() -> tuple[int, dict[str, Any], str]:
    return rehearse()


def test_a_release_and_a_rollback_under_load_drop_nothing(plain: tuple[int, dict[str, Any], str]) -> None:
    code, report, progress = plain
    assert set(report) >= CONTRACT, CONTRACT - set(report)
    assert code == 0 and report["passed"] is True, report
    assert report["requests"] > 1000
    assert report["failed_requests"] == 0
    assert report["sticky_violations"] == 0
    assert report["money_conserved"] is True
    assert report["transfers_acknowledged"] == report["transfers_persisted"] > 100
    assert report["served_by"]["blue"] > 0 and report["served_by"]["green"] > 0
    assert (report["release"]["outcome"], report["rollback"]["outcome"]) == ("succeeded", "succeeded")
    assert [s["to"]["green"] for s in report["release"]["steps"]] == [10, 50, 100]
    assert report["rollback"]["seconds"] < report["release"]["seconds"]
    assert report["processes_left"] == 0
    assert "shifting traffic" in progress and "tearing down" in progress


def test_traffic_follows_each_weight_change(plain: tuple[int, dict[str, Any], str]) -> None:
    _, report, _ = plain
    follow = report["traffic_follow"]
    assert [step["to"]["green"] for step in follow] == [10, 50, 100, 0]
    assert follow[0]["first_green_response_s"] is not None  # the canary got traffic
    assert follow[3]["first_blue_response_s"] is not None  # the rollback brought it back


def test_faults_lose_no_acknowledged_transfer_and_the_broken_release_rolls_back() -> None:
    code, report, _ = rehearse("--faults")
    assert set(report) >= FAULTS_CONTRACT, FAULTS_CONTRACT - set(report)
    assert code == 0 and report["passed"] is True, report
    faults = {f["scenario"]: f for f in report["faults"]}
    assert set(faults) == {"sigterm_pod", "sigkill_pod", "postgres_restart", "broken_release"}
    assert faults["sigterm_pod"]["failed_requests"] == 0 and faults["sigterm_pod"]["exited_gracefully"]
    assert all(f["requests"] > 0 for f in faults.values())
    assert report["transfers_lost"] == 0 and report["operations_given_up"] == 0
    assert report["transfers_acknowledged"] == report["transfers_persisted"]
    assert report["failed_requests_outside_faults"] == 0
    broken = faults["broken_release"]
    assert broken["release_outcome"] == "failed" and broken["rolled_back_as_expected"] is True
    assert broken["traffic_after"] == {"blue": 100, "green": 0} and broken["served_by_green"] == 0
    assert report["money_conserved"] is True and report["processes_left"] == 0
