"""`cutover` end to end as a subprocess: Route53 and DynamoDB served by a strict moto
server, real ledger processes as the colors (the local deployer), real HTTP health gates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipelines.cli_env import AWS_ENV, Env, as_json, cutover, start_cutover


def test_release_status_rollback_history(env: Env) -> None:
    released = cutover(env, "release", "--image", "v2", "--strategy", "canary:10,50,100", "--json")
    assert released.returncode == 0, released.stderr
    outcome = as_json(released)
    assert outcome["after"] == {"blue": 0, "green": 100, "generation": 3}
    assert [step["to"]["green"] for step in outcome["steps"]] == [10, 50, 100]
    assert "deploying" in released.stderr and "baking" in released.stderr
    assert env.weights() == {"blue": 0, "green": 100}

    status = as_json(cutover(env, "status", "--json"))
    assert status["active"] == "green"
    assert status["colors"]["green"] == {
        **status["colors"]["green"],
        "image": "v2",
        "healthy": True,
        "weight": 100,
    }
    assert status["colors"]["blue"]["image"] == "v1" and status["colors"]["blue"]["healthy"]  # warm
    assert status["lock"] is None

    rolled = cutover(env, "rollback", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert as_json(rolled)["after"]["blue"] == 100 and env.weights() == {"blue": 100, "green": 0}

    history = as_json(cutover(env, "history", "--json"))
    assert [(r["operation"], r["outcome"]) for r in history] == [
        ("rollback", "succeeded"),
        ("release", "succeeded"),
    ]
    assert history[1]["image"] == "v2" and history[1]["to_color"] == "green"
    table = cutover(env, "history")
    assert table.returncode == 0 and "rollback" in table.stdout


def test_two_releases_at_once_one_runs_the_other_exits_3(env: Env) -> None:
    first = start_cutover(
        env, "release", "--image", "v2", "--strategy", "canary:10,100", "--bake", "10", "--json"
    )  # a bake longer than the second command can take on a loaded machine: the records it
    # compares are the first's 10% step, not its next one
    deadline = time.monotonic() + 30
    while env.weights()["green"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = env.records()
    history_before = env.history_items()
    second = cutover(env, "release", "--image", "v3", "--json")
    assert second.returncode == 3, second.stderr
    assert as_json(second)["outcome"] == "locked"
    assert env.history_items() == history_before
    assert env.records() == before
    assert first.wait(60) == 0
    assert env.weights() == {"blue": 0, "green": 100}


BAD_INPUT = [
    (["release", "--image", "v2", "--strategy", "canary:50,10"], "canary steps"),
    (["release", "--image", "v2", "--strategy", "blue-green"], "strategy must be"),
    (["release", "--image", " "], "--image must not be empty"),
    (["release", "--image", "v2", "--bake", "-1"], "--bake"),
    (["release", "--image", "v2", "--bake", "nan"], "--bake"),
    (["release", "--image", "v2", "--bake", "inf"], "--bake"),
    (["shift", "--to", "purple", "--weight", "10"], "color must be blue or green"),
    (["shift", "--to", "green", "--weight", "101"], "--weight must be from 0 to 100"),
    (["release"], "Missing option '--image'"),
    (["rollback", "--frobnicate"], "No such option"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(env: Env, args: list[str], message: str) -> None:
    before, history_before = env.records(), env.history_items()
    result = cutover(env, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cutover: ") and message in lines[0], result.stderr
    assert env.records() == before and env.history_items() == history_before


def test_unknown_env_and_missing_records_are_refused(env: Env, tmp_path: Path) -> None:
    unknown = subprocess.run(
        [sys.executable, "-m", "cutover", "status", "--env", "nowhere"],
        capture_output=True,
        text=True,
        env={**os.environ, **AWS_ENV},
    )
    assert unknown.returncode == 2 and "unknown environment 'nowhere'" in unknown.stderr
    spec = json.loads(env.file.read_text())
    empty_zone = env.client("route53").create_hosted_zone(Name="empty.com", CallerReference="e")[
        "HostedZone"
    ]["Id"]
    spec["router"]["hosted_zone_id"] = empty_zone
    broken = Env(tmp_path / "broken.json", env.endpoint, empty_zone, env.deployer)
    broken.file.write_text(json.dumps(spec))
    before = broken.records()
    result = cutover(broken, "rollback")
    assert result.returncode == 2 and "no weighted A record" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert broken.records() == before


def kill_release_at_the_first_step(env: Env, strategy: str) -> None:
    """Start a release, and SIGKILL it once green has its first 10% (mid-bake)."""
    release = start_cutover(env, "release", "--image", "v2", "--strategy", strategy, "--bake", "30")
    deadline = time.monotonic() + 30
    while env.weights()["green"] != 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    release.send_signal(signal.SIGKILL)
    release.wait(10)


def test_killed_mid_shift_status_explains_and_resume_or_rollback_finishes(env: Env) -> None:
    kill_release_at_the_first_step(env, "canary:10,50,100")
    assert env.weights() == {"blue": 90, "green": 10}

    status = as_json(cutover(env, "status", "--json"))
    assert status["active"] is None
    assert status["lock"]["owner"] and status["last_operation"]["outcome"] == "running"
    assert "did not finish" in status["explanation"] and "--resume" in status["explanation"]

    held = cutover(env, "rollback")
    assert held.returncode == 3 and env.weights() == {"blue": 90, "green": 10}

    env.expire_lease()  # the dead release's lease runs out (it renews nothing)
    resumed = cutover(
        env, "release", "--image", "v2", "--resume", "--strategy", "canary:10,50,100", "--bake", "0", "--json"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [s["to"]["green"] for s in as_json(resumed)["steps"]] == [50, 100]
    assert env.weights() == {"blue": 0, "green": 100}


def test_on_call_breaks_a_stuck_lock_to_roll_back(env: Env) -> None:
    kill_release_at_the_first_step(env, "canary:10,100")
    rolled = cutover(env, "rollback", "--break-lock", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert env.weights() == {"blue": 100, "green": 0}
    (latest, *_) = as_json(cutover(env, "history", "--json"))
    assert latest["operation"] == "rollback" and latest["details"]["lock_broken"]["operation"] == "release"


def test_shift_is_gated_on_health_like_a_release(env: Env) -> None:
    before = env.records()
    refused = cutover(env, "shift", "--to", "green", "--weight", "30", "--json")
    assert refused.returncode == 2, refused.stderr  # green runs nothing yet: not healthy
    assert "green is not healthy" in as_json(refused)["reason"]
    assert env.records() == before

    env.deployer.deploy("green", "v2", lambda _line: None)
    shifted = cutover(env, "shift", "--to", "green", "--weight", "30", "--json")
    assert shifted.returncode == 0, shifted.stderr
    assert env.weights() == {"blue": 70, "green": 30}
    status = as_json(cutover(env, "status", "--json"))
    assert status["active"] is None and status["colors"]["green"]["weight"] == 30
    back = cutover(env, "shift", "--to", "blue", "--weight", "100", "--json")
    assert back.returncode == 0 and env.weights() == {"blue": 100, "green": 0}
