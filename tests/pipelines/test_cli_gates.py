"""A manual gate (`pause`, then `cutover promote` or `cutover abort` from another shell),
the release plan (`--dry-run`), and the small things a CLI owes its users."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from cutover.model import PAUSE, BadInput, parse_strategy
from tests.pipelines.cli_env import Env, Follow, as_json, cutover, start_cutover


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def paused(env: Env) -> bool:
    state = as_json(cutover(env, "status", "--json"))["release_in_flight"]
    return bool(state and state["paused"])


@pytest.mark.parametrize(
    ("decision", "code", "weights"),
    [("promote", 0, {"blue": 0, "green": 100}), ("abort", 1, {"blue": 100, "green": 0})],
)
def test_a_pause_waits_for_promote_or_abort_from_another_shell(
    env: Env, decision: str, code: int, weights: dict[str, int]
) -> None:
    release = start_cutover(env, "release", "--image", "v2", "--strategy", "canary:10,pause,100", "--json")
    try:
        wait_for(lambda: paused(env) or release.poll() is not None)
        assert release.poll() is None, release.communicate()
        seen = env.lease_expires_at()
        wait_for(lambda: env.lease_expires_at() > seen, 60)  # still running: it renewed its lease since
        assert release.poll() is None and paused(env)
        assert env.weights() == {"blue": 90, "green": 10}  # it holds at 10% until told
        told = cutover(env, decision, "--json")
        assert told.returncode == 0, told.stderr
        assert as_json(told)["outcome"] == "recorded"
        out, err = release.communicate(timeout=60)
    finally:
        if release.poll() is None:
            release.kill()
    assert release.returncode == code, err
    assert env.weights() == weights
    if decision == "abort":
        assert "aborted by" in json.loads(out)["reason"]


def test_promote_without_a_paused_release_is_refused(env: Env) -> None:
    refused = cutover(env, "promote", "--json")
    assert refused.returncode == 2 and "no release is waiting" in as_json(refused)["reason"]


def test_dry_run_prints_the_plan_and_changes_nothing(env: Env) -> None:
    records, items = env.records(), env.history_items()
    planned = cutover(
        env, "release", "--image", "v2", "--strategy", "canary:10,50,pause,100", "--dry-run", "--json"
    )
    assert planned.returncode == 0, planned.stderr
    plan = as_json(planned)
    assert (plan["from_color"], plan["to_color"], plan["image"]) == ("blue", "green", "v2")
    assert plan["steps"] == "10%, 50%, pause, 100%" and plan["rollback_to"].startswith("blue")
    table = cutover(env, "release", "--image", "v2", "--dry-run")
    assert table.returncode == 0 and "nothing is changed" in table.stdout
    assert env.records() == records and env.history_items() == items
    assert env.deployer.current_image("green") is None and env.lock_item() is None


def test_version_and_examples_in_help() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cutover", *args], capture_output=True, text=True, timeout=60
        )

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("cutover ")
    helped = run("--help")
    assert "Examples:" in helped.stdout and "cutover rollback --env prod" in helped.stdout
    assert "--install-completion" in helped.stdout


def test_status_exits_1_when_a_color_with_traffic_is_unhealthy(env: Env) -> None:
    assert cutover(env, "status").returncode == 0
    env.deployer.stop("blue")  # blue has all the traffic
    assert cutover(env, "status", "--json").returncode == 1


def test_pause_in_a_strategy() -> None:
    assert parse_strategy("canary:10,50,pause,100") == (10, 50, PAUSE, 100)
    assert parse_strategy("canary:10,pause") == (10, PAUSE, 100)
    for bad in ("canary:pause,10", "canary:10,pause,pause,50", "canary:10,100,pause", "canary:pause"):
        with pytest.raises(BadInput):
            parse_strategy(bad)


def test_status_watch_repeats_until_ctrl_c(env: Env) -> None:
    watching = start_cutover(env, "status", "--watch", "0.3", "--json")
    assert watching.stdout is not None
    printed = Follow(watching.stdout)
    printed.wait_for(lambda lines: sum(line.startswith('{"env"') for line in lines) >= 2)
    watching.send_signal(signal.SIGINT)
    watching.wait(20)
    out, err = printed.text(), watching.stderr.read() if watching.stderr else ""
    assert watching.returncode == 130, err
    reports = [json.loads(line) for line in out.splitlines() if line.startswith('{"env"')]
    assert len(reports) >= 2 and all(r["active"] == "blue" for r in reports)
    assert json.loads(out.splitlines()[-1])["outcome"] == "cancelled"  # the last line says how it ended


def test_dry_run_exits_as_the_release_would(env: Env) -> None:
    env.deployer.stop("blue")  # the active color is down: a release refuses
    down = cutover(env, "release", "--image", "v2", "--dry-run", "--json")
    assert down.returncode == 2 and "blue is not healthy" in as_json(down)["reason"]
    env.deployer.deploy("blue", "v1", lambda _line: None)
    env.set_weights(90, 10)  # split (generation untouched): a release without --resume refuses
    split = cutover(env, "release", "--image", "v2", "--dry-run", "--json")
    assert split.returncode == 2 and as_json(split)["outcome"] == "refused"
    env.set_weights(100, 0)
    release = start_cutover(env, "release", "--image", "v2", "--strategy", "canary:10,pause,100", "--json")
    try:
        wait_for(lambda: paused(env) or release.poll() is not None)
        locked = cutover(env, "release", "--image", "v3", "--dry-run", "--json")
        assert locked.returncode == 3 and as_json(locked)["outcome"] == "locked"
        assert cutover(env, "abort").returncode == 0
        assert release.wait(60) == 1
    finally:
        if release.poll() is None:
            release.kill()


def test_promote_for_a_release_whose_process_died_is_refused(env: Env) -> None:
    release = start_cutover(env, "release", "--image", "v2", "--strategy", "canary:10,pause,100")
    wait_for(lambda: paused(env) or release.poll() is not None)
    release.send_signal(signal.SIGKILL)
    release.wait(10)
    env.expire_lease()  # its lease runs out (a dead process renews nothing)
    refused = cutover(env, "promote", "--json")
    assert refused.returncode == 2 and "no release is running" in as_json(refused)["reason"]
    resumed = start_cutover(env, "release", "--resume", "--json")  # its own steps: pauses again
    try:
        wait_for(lambda: paused(env) or resumed.poll() is not None)
        assert resumed.poll() is None
        assert cutover(env, "promote").returncode == 0
        second = cutover(env, "abort", "--json")  # the first decision stands (or was already acted on)
        assert second.returncode == 2, second.stderr
        assert any(why in as_json(second)["reason"] for why in ("already recorded", "no release is waiting"))
        assert resumed.wait(60) == 0
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert env.weights() == {"blue": 0, "green": 100}


def test_status_watch_refuses_an_endless_interval(env: Env) -> None:
    refused = cutover(env, "status", "--watch", "inf", "--json")
    assert refused.returncode == 2 and as_json(refused)["outcome"] == "refused"
