"""cutover's safety promises, each tried as on-call and CI would, through the `cutover`
subprocess against a strict moto server (a DELETE must match the live record exactly) and
real ledger processes: rollback to the last known good, --force, hand edits, cancels,
gate bypasses, --resume, truthful exits, throttling, and the environment file."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto.route53 import responses as route53_responses
from moto.route53.exceptions import Route53ClientError

from tests.pipelines.cli_env import Env, Follow, as_json, cutover, start_cutover
from tests.pipelines.conftest import MotoServer


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def release_v2(env: Env) -> None:
    released = cutover(env, "release", "--image", "v2", "--strategy", "all-at-once", "--json")
    assert released.returncode == 0, released.stderr
    assert env.weights() == {"blue": 0, "green": 100}


def start_release_and_wait_for_ten_percent(env: Env, bake: str = "30") -> subprocess.Popen[str]:
    release = start_cutover(
        env, "release", "--image", "v2", "--strategy", "canary:10,50,100", "--bake", bake, "--json"
    )
    wait_for(lambda: env.weights()["green"] == 10 or release.poll() is not None)
    assert release.poll() is None, release.communicate()
    return release


# ---------------------------------------------------------------- 1. last known good


def test_two_rollbacks_in_a_row_stay_on_the_last_known_good(env: Env) -> None:
    release_v2(env)
    first = cutover(env, "rollback", "--json")
    assert first.returncode == 0, first.stderr
    assert env.weights() == {"blue": 100, "green": 0}
    records = env.records()
    second = cutover(env, "rollback", "--json")
    assert second.returncode == 0, second.stderr
    assert "nothing to roll back" in as_json(second)["reason"]
    assert "nothing to roll back" in second.stderr.strip().splitlines()[-1]
    assert env.records() == records  # not even the generation moved
    status = as_json(cutover(env, "status", "--json"))
    assert status["last_good"] == {"color": "blue", "image": "v1"}
    assert status["colors"]["green"]["verified"] is False  # v2 was rolled back


def test_two_rollbacks_at_once_or_queued_both_end_on_the_last_known_good(env: Env) -> None:
    release_v2(env)
    together = [start_cutover(env, "rollback", "--json") for _ in range(2)]
    codes = sorted(p.wait(60) for p in together)
    assert codes in ([0, 0], [0, 3]), codes
    assert env.weights() == {"blue": 100, "green": 0}
    assert env.lock_item() is None  # both ended and left the lock free for the queued one
    queued = cutover(env, "rollback", "--json")
    assert queued.returncode == 0 and "nothing to roll back" in as_json(queued)["reason"]
    assert env.weights() == {"blue": 100, "green": 0}


def test_rollback_after_a_release_killed_before_traffic_moved_changes_nothing(env: Env) -> None:
    release = start_cutover(env, "release", "--image", "v2", "--json")
    wait_for(lambda: env.deployer.pids("green"))  # deploying: no traffic has moved
    release.send_signal(signal.SIGKILL)
    release.wait(10)
    assert env.weights() == {"blue": 100, "green": 0}
    status = as_json(cutover(env, "status", "--json"))
    assert "nothing to roll back" in status["explanation"]
    records = env.records()
    rolled = cutover(env, "rollback", "--break-lock", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert "nothing to roll back" in as_json(rolled)["reason"]
    assert env.records() == records  # never onto the green that no gate checked
    killed = next(r for r in env.history() if r["operation"] == "release")
    assert killed["outcome"] == "abandoned"


def test_rollback_on_a_new_environment_moves_nothing_onto_the_idle_color(env: Env) -> None:
    env.deployer.deploy("green", "v9-never-released", lambda _line: None)
    records = env.records()
    rolled = cutover(env, "rollback", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert "nothing to roll back" in as_json(rolled)["reason"]
    assert env.records() == records


# ---------------------------------------------------------------- 2. --force


def test_rollback_force_moves_onto_an_unhealthy_last_good(env: Env) -> None:
    release_v2(env)
    env.deployer.stop("blue")  # the last known good is down
    refused = cutover(env, "rollback", "--json")
    assert refused.returncode == 2 and env.weights() == {"blue": 0, "green": 100}
    assert "--force" in as_json(refused)["reason"]
    forced = cutover(env, "rollback", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert env.weights() == {"blue": 100, "green": 0}
    latest = env.history()[0]
    assert latest["outcome"] == "succeeded" and latest["details"]["forced"] is True


# ---------------------------------------------------------------- 3. a human's edit


def test_a_console_edit_during_a_release_is_never_overwritten(env: Env) -> None:
    release = start_release_and_wait_for_ten_percent(env, bake="2")
    env.set_weights(70, 30)  # the console: weights edited, generation record untouched
    out, err = release.communicate(timeout=60)
    assert release.returncode == 4, err
    assert env.weights() == {"blue": 70, "green": 30}  # the human's weights stand
    outcome = json.loads(out)
    assert outcome["outcome"] == "failed, traffic not restored" and "someone else" in outcome["reason"]
    assert "name='ledger.example.com.'" in err  # the AWS error text keeps its [name=...] part
    assert (
        err.strip().splitlines()[-1].startswith("cutover: ACT NOW")
        and "cutover rollback" in err.splitlines()[-1]
    )
    assert env.lock_item() is None


# ---------------------------------------------------------------- 4. cancel


@pytest.mark.parametrize(
    ("signals", "code"),
    [([signal.SIGINT], 130), ([signal.SIGTERM], 143), ([signal.SIGINT, signal.SIGTERM], 130)],
    ids=["sigint", "sigterm", "ci-cancel-sigint-then-sigterm"],
)
def test_a_cancel_mid_bake_restores_traffic_and_releases_the_lock(
    env: Env, signals: list[int], code: int
) -> None:
    release = start_release_and_wait_for_ten_percent(env)
    assert release.stderr is not None and release.stdout is not None
    progress = Follow(release.stderr)
    sent = time.monotonic()
    first, *later = signals
    release.send_signal(first)
    for signum in later:  # CI's SIGTERM comes while the cancel is under way: it must not abandon it
        progress.wait_for(lambda lines: any("cancelled: cancelled by" in line for line in lines))
        release.send_signal(signum)
    release.wait(30)
    out, err = release.stdout.read(), progress.text()
    assert release.returncode == code, err
    assert time.monotonic() - sent < 15
    assert env.weights() == {"blue": 100, "green": 0}
    outcome = json.loads(out)
    assert outcome["outcome"] == "cancelled" and outcome["after"]["blue"] == 100
    assert env.lock_item() is None
    latest = next(r for r in env.history() if r["operation"] == "release")
    assert latest["outcome"] == "cancelled"
    again = cutover(env, "release", "--image", "v2", "--strategy", "all-at-once", "--json")
    assert again.returncode == 0, again.stderr  # nothing left behind: not "split", not "locked"


def test_a_cancel_while_deploying_exits_with_nothing_moved(env: Env) -> None:
    release = start_cutover(env, "release", "--image", "v2", "--json")
    wait_for(lambda: env.deployer.pids("green") or release.poll() is not None)
    release.send_signal(signal.SIGINT)
    out, err = release.communicate(timeout=30)
    assert release.returncode == 130, err
    assert json.loads(out)["outcome"] == "cancelled"
    assert env.weights() == {"blue": 100, "green": 0} and env.lock_item() is None


# ---------------------------------------------------------------- 5. the gate bypass


def test_shift_to_weight_zero_gates_the_color_that_gains(env: Env) -> None:
    env.deployer.deploy("green", "v2", lambda _line: None)
    assert cutover(env, "shift", "--to", "green", "--weight", "50").returncode == 0
    env.deployer.stop("blue")
    records = env.records()
    bypass = cutover(env, "shift", "--to", "green", "--weight", "0", "--json")  # blue would get 100%
    assert bypass.returncode == 2, bypass.stderr
    assert "blue" in as_json(bypass)["reason"] and env.records() == records


# ---------------------------------------------------------------- 6. --resume


def test_resume_refuses_anything_but_the_interrupted_release(env: Env) -> None:
    release_v2(env)
    records = env.records()
    nothing = cutover(env, "release", "--resume", "--json")
    assert nothing.returncode == 2 and "no interrupted release" in as_json(nothing)["reason"]
    with_image = cutover(env, "release", "--image", "v3", "--resume", "--json")
    assert with_image.returncode == 2
    assert env.records() == records and env.deployer.current_image("green") == "v2"
    assert env.deployer.current_image("blue") == "v1"  # the warm rollback color was not redeployed


def test_resume_finishes_the_killed_release_with_its_own_image(env: Env) -> None:
    release = start_release_and_wait_for_ten_percent(env)
    release.send_signal(signal.SIGKILL)
    release.wait(10)
    env.expire_lease()  # the dead release's lease runs out (it renews nothing)
    other = cutover(env, "release", "--image", "v3", "--resume", "--json")
    assert other.returncode == 2 and "v2" in as_json(other)["reason"]
    assert env.weights() == {"blue": 90, "green": 10}
    resumed = cutover(env, "release", "--resume", "--bake", "0", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert env.weights() == {"blue": 0, "green": 100} and env.deployer.current_image("green") == "v2"


# ---------------------------------------------------------------- 7. truthful exits


@pytest.mark.parametrize(
    "args",
    [
        ["release", "--image", "v2", "--strategy", "nope"],
        ["rollback", "--frobnicate"],
        ["release"],
        ["shift", "--to", "purple", "--weight", "1"],
        ["history", "--limit", "0"],
    ],
)
def test_json_on_every_refusal(env: Env, args: list[str]) -> None:
    result = cutover(env, *args, "--json")
    assert result.returncode == 2, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["exit_code"] == 2 and outcome["outcome"] == "refused" and outcome["reason"]
    assert len(result.stderr.strip().splitlines()) == 1


def test_aws_unreachable_mid_bake_exits_4_and_says_what_to_run(env: Env, moto_server: MotoServer) -> None:
    spec = env.spec
    spec["aws"]["call_budget_seconds"] = 1
    spec["gates"]["restore_seconds"] = 2
    env.write_spec(spec)
    release = start_release_and_wait_for_ten_percent(env, bake="30")
    moto_server.stop()  # Route53 and DynamoDB gone mid-bake
    try:
        out, err = release.communicate(timeout=90)
    finally:
        moto_server.start()
    assert release.returncode == 4, err
    outcome = json.loads(out)
    assert outcome["exit_code"] == 4 and outcome["next"].startswith("ACT NOW")
    assert err.strip().splitlines()[-1].startswith("cutover: ACT NOW")


# ---------------------------------------------------------------- 8. throttling


@pytest.fixture
def throttled() -> Iterator[list[bool]]:
    """While the flag is set, every Route53 call fails with `Throttling`, as AWS answers
    past 5 requests a second."""
    on = [False]

    class Throttling(Route53ClientError):
        def __init__(self) -> None:
            super().__init__("Throttling", "Rate exceeded")

    originals = {}
    for name in ("list_resource_record_sets", "change_resource_record_sets", "get_change"):
        original = getattr(route53_responses.Route53, name)
        originals[name] = original

        def throttle(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if on[0]:
                raise Throttling()
            return _original(self, *args, **kwargs)

        setattr(route53_responses.Route53, name, throttle)
    try:
        yield on
    finally:
        for name, original in originals.items():
            setattr(route53_responses.Route53, name, original)


def test_sustained_throttling_is_bounded_audible_and_frees_the_lock(env: Env, throttled: list[bool]) -> None:
    spec = env.spec
    spec["aws"]["call_budget_seconds"] = 2
    spec["gates"]["restore_seconds"] = 3
    env.write_spec(spec)
    release = start_release_and_wait_for_ten_percent(env, bake="1")
    throttled[0] = True
    started = time.monotonic()
    try:
        _, err = release.communicate(timeout=120)
    finally:
        throttled[0] = False
    assert time.monotonic() - started < 60  # bounded by the budgets, not boto's 8 x 5 retries
    assert "Throttling" in err and "retrying in" in err  # progress while waiting
    assert release.returncode == 4, err  # traffic stayed at 90/10: it could not be restored
    assert env.weights() == {"blue": 90, "green": 10}
    assert env.lock_item() is None  # on-call is not locked out
    rolled = cutover(env, "rollback", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert env.weights() == {"blue": 100, "green": 0}


def test_ci_cancel_under_sustained_throttling_ends_before_ci_kills_it(
    env: Env, throttled: list[bool]
) -> None:
    """Default budgets (30 s per call): SIGINT, then SIGTERM 7.5 s later, SIGKILL at 10 s."""
    release = start_release_and_wait_for_ten_percent(env, bake="60")
    throttled[0] = True
    try:
        release.send_signal(signal.SIGINT)
        try:
            out, err = release.communicate(timeout=7.5)
        except subprocess.TimeoutExpired:
            release.send_signal(signal.SIGTERM)
            out, err = release.communicate(timeout=2.5)  # raises if CI would have SIGKILLed it
    finally:
        throttled[0] = False
        if release.poll() is None:
            release.kill()
    assert release.returncode == 4, err  # Route53 refused every call: traffic stayed at 90/10
    assert json.loads(out)["next"].startswith("ACT NOW")
    assert err.strip().splitlines()[-1].startswith("cutover: ACT NOW")
    assert env.weights() == {"blue": 90, "green": 10}
    assert env.lock_item() is None
    latest = next(r for r in env.history() if r["operation"] == "release")
    assert latest["outcome"] == "failed, traffic not restored"


def test_weights_both_zero_are_shown_and_rollback_repairs_them(env: Env) -> None:
    release_v2(env)
    env.set_weights(0, 0)  # Route53 then answers with both records alike
    status = as_json(cutover(env, "status", "--json"))
    assert status["written_by_cutover"] is False and status["colors"]["blue"]["share"] == 50
    rolled = cutover(env, "rollback", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert env.weights() == {"blue": 100, "green": 0}


# ---------------------------------------------------------------- 9. the environment file


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["router"].pop("hosted_zone_id"), "`router.hosted_zone_id` is missing"),
        (lambda s: s["router"].update(hosted_zone="Z1"), "`router.hosted_zone` is not a known key"),
        (lambda s: s["lock"].update(lease_seconds="sixty"), "`lock.lease_seconds` must be a number"),
        (lambda s: s["gates"].update(bake_secs=1), "`gates.bake_secs` is not a known gate"),
        (lambda s: s["router"].update(hosted_zone_id="ZNOSUCHZONE"), "`router.hosted_zone_id`"),
        (lambda s: s["lock"].update(table="no-such-table"), "`lock.table`"),
        (lambda s: s["history"].update(table="no-such-table"), "`history.table`"),
        (lambda s: s.update(ready_path="readyz"), "`ready_path` must be a path starting with /"),
        (lambda s: s["deployer"].update(command=[]), "`deployer.command` must be the argv of one instance"),
    ],
    ids=[
        "missing-key",
        "mistyped-key",
        "bad-type",
        "unknown-gate",
        "wrong-zone",
        "no-lock-table",
        "no-history-table",
        "ready-path-not-a-path",
        "deployer-command-empty",
    ],
)
def test_a_bad_environment_file_is_one_line_exit_2_and_changes_nothing(
    env: Env, edit: Any, message: str
) -> None:
    release_v2(env)
    spec = env.spec
    edit(spec)
    env.write_spec(spec)
    records, items = env.records(), env.history_items()
    for command in (["rollback"], ["shift", "--to", "blue", "--weight", "10"]):
        result = cutover(env, *command)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert message in lines[-1], result.stderr
        assert "Traceback" not in result.stderr and "KeyError" not in result.stderr
    assert env.records() == records and env.history_items() == items
    assert env.lock_item() is None


def test_status_shows_the_real_split_and_operations_refuse_weights_cutover_did_not_write(env: Env) -> None:
    release_v2(env)
    env.set_weights(200, 1)
    status = as_json(cutover(env, "status", "--json"))
    assert status["active"] is None and status["written_by_cutover"] is False
    assert status["colors"]["green"]["share"] == pytest.approx(0.5, abs=0.01)
    assert "not written by cutover" in status["explanation"]
    env.set_weights(3, 7)
    records = env.records()
    for command in (["release", "--image", "v2"], ["shift", "--to", "blue", "--weight", "100"]):
        refused = cutover(env, *command, "--json")
        assert refused.returncode == 2 and "not written by cutover" in as_json(refused)["reason"]
    assert env.records() == records
    rolled = cutover(env, "rollback", "--json")  # the way back: all on the last known good
    assert rolled.returncode == 0, rolled.stderr
    assert env.weights() == {"blue": 100, "green": 0}
