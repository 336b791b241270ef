"""The rehearsal end to end, as `make demo` runs it (shorter windows): real Postgres,
real ledger processes, real Envoy, the real release code, live load; on the AWS path
(Route53 on a strict moto, DNS with TTLs, one ALB-shaped Envoy per color) and on the
Envoy-weights path; and `--faults`, at the end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

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
AWS_CONTRACT = {
    "router",
    "dns_ttl_seconds",
    "dns_answers",
    "after_last_change",
    "retire",
    "services",
}  # the AWS path
SERVICE_KEYS = {"release", "rollback", "requests", "failed_requests", "served_by"}  # per other service
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
def aws_path() -> tuple[int, dict[str, Any], str]:
    return rehearse()  # the default: Route53 (strict moto), DNS with TTLs, one ALB per color


@pytest.fixture(scope="module")
def envoy_path() -> tuple[int, dict[str, Any], str]:
    return rehearse("--router", "envoy")


def _release_and_rollback_dropped_nothing(report: dict[str, Any]) -> None:
    assert set(report) >= CONTRACT, CONTRACT - set(report)
    assert report["passed"] is True, report
    assert report["requests"] > 400  # load flowed throughout (a loaded CI machine serves fewer)
    assert report["failed_requests"] == 0
    assert report["sticky_violations"] == 0, report.get("sticky_violation_examples")
    assert report["money_conserved"] is True
    assert report["transfers_acknowledged"] == report["transfers_persisted"] > 100
    assert report["served_by"]["blue"] > 0 and report["served_by"]["green"] > 0
    assert (report["release"]["outcome"], report["rollback"]["outcome"]) == ("succeeded", "succeeded")
    assert [s["to"]["green"] for s in report["release"]["steps"]] == [10, 50, 100]
    assert report["rollback"]["seconds"] < report["release"]["seconds"]
    assert report["processes_left"] == 0


def test_the_aws_path_releases_and_rolls_back_under_load_dropping_nothing(
    aws_path: tuple[int, dict[str, Any], str],
) -> None:
    code, report, progress = aws_path
    assert code == 0
    _release_and_rollback_dropped_nothing(report)
    assert set(report) >= AWS_CONTRACT, AWS_CONTRACT - set(report)
    assert report["router"] == "route53"
    assert "Route53" in progress and "DNS TTL" in progress and "tearing down" in progress
    # Both colors were chosen by the DNS server from the live weighted records.
    assert report["dns_answers"]["blue"] > 0 and report["dns_answers"]["green"] > 0


def test_the_aws_path_releases_and_rolls_back_greeter_beside_ledger(
    aws_path: tuple[int, dict[str, Any], str],
) -> None:
    """The second service on the same ALBs and zone, with its own environment file: released
    onto green, then rolled back to blue, while ledger's load ran without a failure."""
    _, report, progress = aws_path
    greeter = report["services"]["greeter"]
    assert set(greeter) >= SERVICE_KEYS, SERVICE_KEYS - set(greeter)
    assert (greeter["release"]["outcome"], greeter["rollback"]["outcome"]) == ("succeeded", "succeeded"), (
        greeter
    )
    assert greeter["weights_after"] == {"blue": 100, "green": 0}, greeter
    assert greeter["failed_requests"] == 0, greeter.get("failed_examples")
    # its own clients reached blue before and after, and green while it had the traffic
    assert greeter["requests"] == greeter["served_by"]["blue"] + greeter["served_by"]["green"] > 0, greeter
    assert greeter["served_by"]["blue"] > 0 and greeter["served_by"]["green"] > 0, greeter
    assert greeter["ledger_records_untouched"] is True, greeter
    assert report["failed_requests"] == 0 and report["passed"] is True
    assert (
        "release greeter v0.2.0 onto green" in progress
        and "cutover rollback --env rehearsal-greeter" in progress
    )


def test_the_old_color_answers_until_cached_dns_answers_expire_and_is_retired_after(
    aws_path: tuple[int, dict[str, Any], str],
) -> None:
    _, report, _ = aws_path
    after = report["after_last_change"]
    assert after["old_color"] == "green"
    # Clients kept their cached answer: green still answered after its weight went to 0,
    # never longer than the longest a client holds an answer (plus the length of a request).
    assert after["requests"] > 0
    assert 0 < after["last_answer_s"] <= after["bound_s"] + 1.0
    retire = report["retire"]
    assert retire["outcome"] == "retired", retire
    assert retire["failed_requests"] == 0
    assert retire["waited_seconds"] >= report["dns_ttl_seconds"]  # never before the TTL


def test_the_envoy_path_releases_and_rolls_back_under_load_dropping_nothing(
    envoy_path: tuple[int, dict[str, Any], str],
) -> None:
    code, report, progress = envoy_path
    assert code == 0
    _release_and_rollback_dropped_nothing(report)
    assert "shifting traffic" in progress and "tearing down" in progress


def test_traffic_follows_each_weight_change(envoy_path: tuple[int, dict[str, Any], str]) -> None:
    _, report, _ = envoy_path
    follow = report["traffic_follow"]
    assert [step["to"]["green"] for step in follow] == [10, 50, 100, 0]
    assert follow[0]["first_green_response_s"] is not None  # the canary got traffic
    assert follow[3]["first_blue_response_s"] is not None  # the rollback brought it back


def test_an_unknown_router_is_refused_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cutover", "rehearse", "--router", "nginx"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["cutover: --router must be route53 or envoy (got 'nginx')"]


def _processes_using(directory: str) -> list[str]:
    """Processes whose command line or stdout/stderr name `directory` (ledger's logs, Envoy's
    config, Postgres' data directory all live in the rehearsal's working directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            names = [(entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")]
            names += [os.readlink(entry / "fd" / fd) for fd in ("1", "2")]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(directory in name for name in names):
            found.append(f"{entry.name}: {names[0][:120]}")
    return found


# Inside the machine's operations (the release's deploy, the retire's wait): each ends the
# operation itself (traffic restored), then the rehearsal must stop too.
@pytest.mark.parametrize(
    "moment", ["deploying  v2 to green", "waiting until retiring is safe", "deploying  v0.2.0 to green"]
)
def test_sigint_mid_rehearsal_ends_the_step_then_tears_everything_down(moment: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cutover", "rehearse", "--short", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    workdir, lines = "", []
    for line in process.stderr:
        lines.append(line)
        found = re.search(r"--env (/\S+)/rehearsal\.json", line)
        workdir = found.group(1) if found else workdir
        if moment in line:
            break
    assert workdir and _processes_using(workdir), "".join(lines)  # it runs: Postgres, Envoys, ledger
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert json.loads(out)["outcome"] == "cancelled"
    assert "tearing down" in err and err.strip().splitlines()[-1] == (
        "cutover: cancelled by SIGINT; nothing was changed"
    )
    assert _processes_using(workdir) == []
    assert not Path(workdir).exists()


# --- the faults (`--faults`) on the AWS path: every fault under live load (pods signalled,
# Postgres restarted, a broken build, CI cancelling a release, a human editing the weights
# in the console, the Route53 API away, the database password rotated, a canary failing a
# share of its requests), each with its own line in the report, nothing acknowledged lost.
# In this file, not one of its own: `make test` runs a file per worker, and two rehearsals
# at once on 2 cores starve each other (a release timed out waiting for readiness).


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
