"""`cutover retire` attacked: history that hides a canary, signals at the edges of the wait,
a rollback while the color stops, hostile access logs and CloudWatch answers, and bad
environment files; first on the machine with fakes at the edges, then as a subprocess
against the strict moto server and real ledger processes (the `env` fixture), as on-call,
CI and a second operator would run it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cutover import envconfig
from cutover.adapters.cloudwatch_metrics import AlbTarget
from cutover.adapters.local_deployer import LocalDeployer, pid_alive
from cutover.adapters.traffic_meter import AccessLogMeter, CloudWatchMeter, parse_time
from cutover.build import build_retire_parts
from cutover.machine import Reporter, State, weight_zero_since
from cutover.model import COLORS, BadInput, Color, Traffic
from cutover.ports import MeterError, Record
from cutover.release_state import rollback_target
from tests.pipelines.cli_env import Env, Follow, as_json, cutover, start_cutover
from tests.pipelines.conftest import MotoServer
from tests.pipelines.test_cli_retire import with_meter
from tests.pipelines.test_retire import EPOCH, POLICY, World, moved_to_blue

# ------------------------------------------------------------------ when the weight went to 0


def failed_canary(started: float, restored: float) -> Record:
    """A release to green that put it at 10%, failed its bake and was restored to blue 100:
    it starts and ends with green at 0, but green had weight (and DNS answers) until `restored`."""
    return Record(
        id="rel2",
        operation="release",
        actor="ci",
        env="test",
        started_at=started,
        from_traffic=Traffic(100, 0, 6),
        image="v3",
        to_color="green",
        to_traffic=Traffic(100, 0, 8),
        outcome="failed",
        finished_at=restored,
        details={"steps": [{"to": {"blue": 90, "green": 10, "generation": 7}, "sync_seconds": 0.1}]},
    )


def test_a_failed_canary_counts_as_weight_until_it_was_restored() -> None:
    world = World(zero_ago=300)  # green went to 0 long ago ...
    world.history.write(failed_canary(EPOCH - 40, EPOCH - 10))  # ... and had 10% again until 10 s ago
    world.meter.last["green"] = EPOCH - 35  # its last request the meter saw
    records = world.history.recent(50)
    assert weight_zero_since("green", records) == EPOCH - 10
    result = world.machine().retire(world.meter, POLICY)
    assert result.exit_code == 2, result.reason  # cached answers may still send it requests
    assert result.extra["wait_seconds"] == 50 and world.deployer.retired == []


def test_a_release_to_the_color_whose_process_died_counts_as_weight() -> None:
    world = World(zero_ago=300)
    died = Record(
        id="rel3",
        operation="release",
        actor="ci",
        env="test",
        started_at=EPOCH - 100,
        from_traffic=Traffic(100, 0, 6),
        image="v3",
        to_color="green",
        outcome="abandoned",  # it may have moved green to a canary weight before it died
    )
    world.history.write(died)
    later = Record(
        id="shift4",
        operation="shift",
        actor="oncall",
        env="test",
        started_at=EPOCH - 20,
        from_traffic=Traffic(100, 0, 9),  # found it at 0: set back by hand meanwhile
        to_color="blue",
        to_traffic=Traffic(100, 0, 9),
        outcome="succeeded",
        finished_at=EPOCH - 19,
    )
    world.history.write(later)
    assert weight_zero_since("green", world.history.recent(50)) == EPOCH - 20
    assert world.machine().retire(world.meter, POLICY).exit_code == 2


# ------------------------------------------------------------------ signals at the edges


class SignalOnState(Reporter):
    """Delivers `signum` as the machine enters `state` (with `detail` starting as given)."""

    def __init__(self, world: World, signum: int, state: State, detail: str) -> None:
        self.world, self.signum, self.at, self.detail = world, signum, state, detail

    def state(self, state: State, detail: str = "") -> None:
        if state == self.at and detail.startswith(self.detail):
            self.world.cancel.deliver(self.signum)


def test_a_signal_as_the_wait_ends_is_a_cancelled_result_not_an_exception() -> None:
    world = World(zero_ago=55)  # safe 5 s into the wait
    before = world.snapshot()
    machine = world.machine()
    machine.reporter = SignalOnState(world, signal.SIGTERM, State.LOCKING, "safe now")
    result = machine.retire(world.meter, POLICY, wait=True)  # must return, whatever arrives
    assert result.state == State.CANCELLED and result.exit_code == 143
    assert result.extra["retired"] is False and result.extra["color"] == "green"
    assert world.snapshot() == before and world.deployer.retired == []


# ------------------------------------------------------------------ a rollback while it stops


def test_from_the_moment_it_stops_a_rollback_can_no_longer_choose_the_color() -> None:
    world = World(zero_ago=120)  # green holds the last known good
    seen: list[Any] = []
    stop = world.deployer.retire

    def retire(color: Color, progress: Callable[[str], None]) -> None:
        # what a `cutover rollback --break-lock` reads while the instances drain
        seen.append(rollback_target(world.states.load()))
        stop(color, progress)

    world.deployer.retire = retire  # type: ignore[method-assign]
    result = world.machine().retire(world.meter, POLICY)
    assert result.exit_code == 0 and seen == [None]


def test_a_failed_stop_leaves_no_rollback_onto_the_half_stopped_color() -> None:
    world = World(zero_ago=120)
    world.deployer.fail_retire = True
    result = world.machine().retire(world.meter, POLICY)
    assert result.exit_code == 1 and world.router.sets == []
    # some of its instances may be stopped: `rollback --force` (no health check) must not go there
    assert rollback_target(world.states.load()) is None
    assert world.deployer.is_retired("green") is False  # so a second `cutover retire` stops the rest


# ------------------------------------------------------------------ hostile access logs


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meter_on(tmp: Path, green_lines: list[str], **options: Any) -> AccessLogMeter:
    (tmp / "blue.log").write_text("")
    (tmp / "green.log").write_text("".join(line + "\n" for line in green_lines))
    return AccessLogMeter({"blue": tmp / "blue.log", "green": tmp / "green.log"}, lag_seconds=0, **options)


def test_an_absurd_number_is_an_untimed_line_not_a_crash(tmp_path: Path) -> None:
    assert parse_time(10**400) is None
    meter = meter_on(
        tmp_path, ['{"start_time": 1' + "0" * 400 + "}", json.dumps({"start_time": 1_800_000_000})]
    )
    assert meter.last_request_at("green", 0) == 1_800_000_000


@pytest.mark.parametrize("how", ["copytruncate", "rename-and-create"])
def test_a_log_rotated_between_two_looks_keeps_the_last_request(tmp_path: Path, how: str) -> None:
    recent = datetime.now(UTC).timestamp() - 3
    meter = meter_on(tmp_path, [json.dumps({"start_time": stamp(recent)})])
    assert meter.last_request_at("green", 0) == pytest.approx(recent, abs=0.01)
    log = tmp_path / "green.log"
    if how == "copytruncate":
        log.write_text("")
    else:
        log.rename(tmp_path / "green.log.1")
        log.write_text("")
    rotated_at = os.stat(log).st_mtime
    seen = meter.last_request_at("green", 0)
    # the requests written before the rotation are gone from the file, not from the meter;
    # those written after its last look up to the rotation may be lost: count one then
    assert seen is not None and seen >= max(recent, rotated_at)


# ------------------------------------------------------------------ CloudWatch that answers badly

LB = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/ledger-{c}/50dc6c495c0c9188"
TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/ledger-{c}/73e2d6bc24d8a067"


@pytest.mark.parametrize("status", ["Forbidden", "InternalError"])
def test_a_cloudwatch_result_it_may_not_read_is_an_error_not_silence(status: str) -> None:
    client = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    targets: dict[Color, AlbTarget] = {c: AlbTarget(LB.format(c=c), TG.format(c=c)) for c in COLORS}
    meter = CloudWatchMeter(targets, client=client, clock=lambda: 1_800_000_000.0)
    answer = {
        "MetricDataResults": [
            {"Id": "requests", "Label": "RequestCount", "Timestamps": [], "Values": [], "StatusCode": status}
        ]
    }
    with Stubber(client) as stub:
        stub.add_response("get_metric_data", answer)
        with pytest.raises(MeterError, match=status):
            meter.last_request_at("green", 1_800_000_000.0 - 3600)


# ------------------------------------------------------------------ bad environment files


def env_spec(tmp: Path) -> dict[str, Any]:
    (tmp / "b.log").write_text("")
    (tmp / "g.log").write_text("")
    (tmp / "dir.log").mkdir()
    return {
        "name": "attack",
        "router": {"type": "route53", "hosted_zone_id": "Z1", "record_name": "ledger.example.com"},
        "deployer": {"type": "local", "state_dir": "colors", "ports": {"blue": [18001], "green": [18002]}},
        "lock": {"type": "file", "path": "lock.json"},
        "history": {"type": "file", "path": "history.json"},
        "colors": {c: {"endpoint": f"http://127.0.0.1:1800{n}"} for n, c in enumerate(COLORS, 1)},
        "traffic_meter": {"type": "envoy-access-log", "paths": {"blue": "b.log", "green": "g.log"}},
    }


BAD_FILES: dict[str, tuple[str, str, Any, str]] = {
    # case: (section, key, value, what the one line must name)
    "unknown meter type": ("traffic_meter", "type", "prometheus", "`traffic_meter.type`"),
    "a path for a third color": (
        "traffic_meter",
        "paths",
        {"blue": "b.log", "green": "g.log", "red": "r.log"},
        "`traffic_meter.paths.red`",
    ),
    "a path that is a directory": (
        "traffic_meter",
        "paths",
        {"blue": "b.log", "green": "dir.log"},
        "`traffic_meter.paths.green`",
    ),
    "lag NaN": ("traffic_meter", "lag_seconds", math.nan, "`traffic_meter.lag_seconds`"),
    "lag Infinity": ("traffic_meter", "lag_seconds", math.inf, "`traffic_meter.lag_seconds`"),
    "lag of a century": ("traffic_meter", "lag_seconds", 3.2e9, "`traffic_meter.lag_seconds`"),
    "settle NaN": ("traffic_meter", "settle_seconds", math.nan, "`traffic_meter.settle_seconds`"),
    "settle over a day": ("traffic_meter", "settle_seconds", 86_401, "`traffic_meter.settle_seconds`"),
    "TTL NaN": ("router", "answer_ttl_seconds", math.nan, "`router.answer_ttl_seconds`"),
    "TTL huge": ("router", "answer_ttl_seconds", 1e308, "`router.answer_ttl_seconds`"),
    "TTL too big for a float": ("router", "answer_ttl_seconds", 10**400, "`router.answer_ttl_seconds`"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_traffic_meter_or_ttl_is_refused_naming_the_key(tmp_path: Path, case: str) -> None:
    section, key, value, named = BAD_FILES[case]
    spec = env_spec(tmp_path)
    spec[section][key] = value
    file = tmp_path / "attack.json"
    file.write_text(json.dumps(spec))  # NaN and Infinity as Python's json writes (and reads) them
    with pytest.raises(BadInput) as refused:
        build_retire_parts(envconfig.load(str(file)), None)
    line = str(refused.value)
    assert named in line and "\n" not in line, line
    assert "a number or a number" not in line, line


def test_the_type_message_reads_as_english(tmp_path: Path) -> None:
    spec = env_spec(tmp_path)
    spec["router"]["answer_ttl_seconds"] = "60"
    with pytest.raises(BadInput, match=r"`router.answer_ttl_seconds` must be a number \(got '60'\)"):
        envconfig.parse(spec, tmp_path / "attack.json")


def test_the_shipped_defaults_still_load(tmp_path: Path) -> None:
    spec = env_spec(tmp_path)
    spec["router"]["answer_ttl_seconds"] = 60
    spec["traffic_meter"].update(lag_seconds=10, settle_seconds=30)
    meter, policy = build_retire_parts(envconfig.parse(spec, tmp_path / "attack.json"), None)
    assert meter.lag_seconds == 10 and policy.answer_ttl_seconds == 60 and policy.settle_seconds == 30


def test_history_of_a_retire_is_no_evidence_of_weight() -> None:
    """A failed retire (its stop failed) moved no traffic: it must not restart the TTL."""
    retire = Record(
        id="ret1",
        operation="retire",
        actor="oncall",
        env="test",
        started_at=EPOCH - 20,
        from_traffic=Traffic(100, 0, 6),
        to_color="green",
        to_traffic=Traffic(100, 0, 6),
        outcome="failed",
        finished_at=EPOCH - 19,
    )
    assert weight_zero_since("green", [retire, moved_to_blue(EPOCH - 120)]) == EPOCH - 120


# ================================================================== the real command


def green_log_line(log: Path, at: float) -> None:
    with log.open("a") as file:
        file.write(json.dumps({"start_time": stamp(at), "path": "/accounts"}) + "\n")


def ready_to_retire(env: Env, tmp: Path, *, ttl: float = 1, settle: float = 1) -> Path:
    """Green running at weight 0 (moved there by `cutover shift`), its access log empty."""
    _blue, green_log = with_meter(env, tmp)
    spec = env.spec
    spec["router"]["answer_ttl_seconds"] = ttl
    spec["traffic_meter"]["settle_seconds"] = settle
    env.write_spec(spec)
    shifted = cutover(env, "shift", "--to", "blue", "--weight", "100")
    assert shifted.returncode == 0, shifted.stderr
    return green_log


def unchanged(env: Env) -> tuple[Any, ...]:
    return (env.history_items(), env.weights(), env.lock_item(), env.deployer.pids("green"))


def stop_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def test_bad_input_through_the_command_is_one_line_exit_2_and_changes_nothing(
    env: Env, tmp_path: Path
) -> None:
    ready_to_retire(env, tmp_path)
    good = env.spec
    before = unchanged(env)
    flags = {
        "--settle -1": ["--settle", "-1"],
        "--settle nan": ["--settle", "nan"],
        "--settle inf": ["--settle", "inf"],
        "--settle 1e309": ["--settle", "1e309"],
        "--settle abc": ["--settle", "abc"],
        "--settle 86401": ["--settle", "86401"],
        "--color purple": ["--color", "purple"],
        "--color BLUE": ["--color", "BLUE"],
        "--color ''": ["--color", ""],
    }
    files: dict[str, Callable[[dict[str, Any]], None]] = {
        "unknown meter type": lambda s: s["traffic_meter"].update(type="statsd"),
        "a color without a path": lambda s: s["traffic_meter"]["paths"].pop("green"),
        "a path that is a directory": lambda s: s["traffic_meter"]["paths"].update(green=str(tmp_path)),
        "lag negative": lambda s: s["traffic_meter"].update(lag_seconds=-1),
        "lag NaN": lambda s: s["traffic_meter"].update(lag_seconds=math.nan),
        "lag a string": lambda s: s["traffic_meter"].update(lag_seconds="10"),
        "settle Infinity": lambda s: s["traffic_meter"].update(settle_seconds=math.inf),
        "an extra key": lambda s: s["traffic_meter"].update(colour="green"),
        "TTL negative": lambda s: s["router"].update(answer_ttl_seconds=-60),
        "TTL a bool": lambda s: s["router"].update(answer_ttl_seconds=True),
        "TTL a string": lambda s: s["router"].update(answer_ttl_seconds="60"),
        "TTL huge": lambda s: s["router"].update(answer_ttl_seconds=1e308),
    }
    wrong: list[str] = []
    for case, args in [*((name, args) for name, args in flags.items()), *((name, []) for name in files)]:
        spec = json.loads(json.dumps(good))
        if case in files:
            files[case](spec)
        env.write_spec(spec)
        result = cutover(env, "retire", *args, "--json")
        lines = result.stderr.strip().splitlines()
        answer = json.loads(result.stdout) if result.stdout.strip() else {}
        if result.returncode != 2 or answer.get("exit_code") != 2 or len(lines) != 1:
            wrong.append(
                f"{case}: exit {result.returncode}, {len(lines)} lines: {result.stderr.strip()[:300]}"
            )
    env.write_spec(good)
    assert not wrong, "\n".join(wrong)
    assert unchanged(env) == before


def test_sigterm_while_waiting_exits_143_with_nothing_changed(env: Env, tmp_path: Path) -> None:
    ready_to_retire(env, tmp_path, ttl=3600)
    before = unchanged(env)
    process = start_cutover(env, "retire", "--wait", "--json")
    assert process.stderr is not None and process.stdout is not None
    progress = Follow(process.stderr)
    try:
        progress.wait_for(lambda lines: any("waiting until retiring is safe" in line for line in lines))
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        stop_process(process)
    answer = json.loads(process.stdout.read())
    assert code == 143 and answer["exit_code"] == 143 and answer["retired"] is False, progress.text()
    assert unchanged(env) == before


def test_sigterm_during_the_stop_does_not_interrupt_it(env: Env, tmp_path: Path) -> None:
    ready_to_retire(env, tmp_path, ttl=1, settle=0.5)
    slow = LocalDeployer(
        env.deployer.state_dir, env.deployer.ports, {**env.deployer.base_env, "DRAIN_SECONDS": "3"}
    )
    slow.deploy("green", "v1", lambda _line: None)  # drains 3 s when stopped
    green = env.deployer.pids("green")
    process = start_cutover(env, "retire", "--wait", "--json")
    assert process.stderr is not None and process.stdout is not None
    progress = Follow(process.stderr)
    try:
        progress.wait_for(lambda lines: any("stopping green:" in line for line in lines), timeout=60)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        stop_process(process)
    answer = json.loads(process.stdout.read())
    text = progress.text()
    assert code == 0 and answer["retired"] is True, text
    assert any("cancel arrived after" in warning for warning in answer["warnings"]), answer["warnings"]
    assert env.deployer.pids("green") == [] and not any(pid_alive(pid) for pid in green)
    assert env.lock_item() is None and env.history()[0]["outcome"] == "succeeded"


def test_a_log_rotated_while_waiting_does_not_hide_the_last_requests(env: Env, tmp_path: Path) -> None:
    settle = 12.0
    green_log = ready_to_retire(env, tmp_path, ttl=1, settle=settle)
    process = start_cutover(env, "retire", "--wait", "--json")
    assert process.stderr is not None and process.stdout is not None
    progress = Follow(process.stderr)
    try:
        deadline = time.monotonic() + 30
        while not any("waiting until retiring is safe" in line for line in progress.lines):
            assert time.monotonic() < deadline and process.poll() is None, progress.lines
            green_log_line(green_log, time.time())  # a client still resolving to green
            time.sleep(0.2)
        time.sleep(1)  # the wait looked at least once more: then the requests stop ...
        green_log_line(green_log, time.time())
        green_log.write_text("")  # ... and logrotate (copytruncate) empties the log
        rotated = time.time()
        code = process.wait(timeout=90)
    finally:
        stop_process(process)
    assert code == 0, progress.text()
    assert time.time() - rotated >= settle  # the settling window, from the last request


def test_an_access_log_deleted_while_waiting_fails_with_nothing_changed(env: Env, tmp_path: Path) -> None:
    green_log = ready_to_retire(env, tmp_path, ttl=3600)
    before = unchanged(env)
    process = start_cutover(env, "retire", "--wait", "--json")
    assert process.stderr is not None and process.stdout is not None
    progress = Follow(process.stderr)
    try:
        progress.wait_for(lambda lines: any("waiting until retiring is safe" in line for line in lines))
        green_log.unlink()
        code = process.wait(timeout=30)
    finally:
        stop_process(process)
    answer = json.loads(process.stdout.read())
    assert code == 1 and "cannot read green's access log" in answer["reason"], progress.text()
    assert "nothing was changed" in answer["reason"] and unchanged(env) == before


def test_aws_gone_while_waiting_fails_with_nothing_changed(
    env: Env, tmp_path: Path, moto_server: MotoServer
) -> None:
    ready_to_retire(env, tmp_path, ttl=3600)
    spec = env.spec
    spec["aws"]["call_budget_seconds"] = 1
    env.write_spec(spec)
    before = unchanged(env)
    process = start_cutover(env, "retire", "--wait", "--json")
    assert process.stderr is not None and process.stdout is not None
    progress = Follow(process.stderr)
    try:
        progress.wait_for(lambda lines: any("waiting until retiring is safe" in line for line in lines))
        moto_server.stop()
        try:
            code = process.wait(timeout=90)
        finally:
            moto_server.start()
    finally:
        stop_process(process)
    answer = json.loads(process.stdout.read())
    assert code == 1 and answer["outcome"] == "failed" and answer["retired"] is False, progress.text()
    assert "nothing was changed" in answer["reason"]
    assert unchanged(env) == before


def test_two_retires_at_once_stop_green_once(env: Env, tmp_path: Path) -> None:
    ready_to_retire(env, tmp_path, ttl=1, settle=0.5)
    green = env.deployer.pids("green")
    first, second = (start_cutover(env, "retire", "--wait", "--json") for _ in range(2))
    try:
        outs = [p.communicate(timeout=120) for p in (first, second)]
    finally:
        stop_process(first)
        stop_process(second)
    answers = [json.loads(out) for out, _ in outs]
    codes = sorted(p.returncode for p in (first, second))
    assert codes in ([0, 0], [0, 3]), outs
    assert any(a["retired"] and not a["reason"].startswith("nothing to do") for a in answers), answers
    assert env.deployer.pids("green") == [] and not any(pid_alive(pid) for pid in green)
    assert env.deployer.pids("blue") and env.weights() == {"blue": 100, "green": 0}
    assert env.lock_item() is None


def test_a_release_running_to_green_keeps_it_from_being_retired(env: Env, tmp_path: Path) -> None:
    with_meter(env, tmp_path)
    spec = env.spec
    spec["router"]["answer_ttl_seconds"] = 1
    env.write_spec(spec)
    release = start_cutover(env, "release", "--image", "v2", "--strategy", "canary:10,100", "--bake", "60")
    assert release.stderr is not None
    progress = Follow(release.stderr)
    try:
        progress.wait_for(lambda lines: any("baking" in line for line in lines), timeout=90)
        green = env.deployer.pids("green")
        named = cutover(env, "retire", "--color", "green", "--json")
        chosen = cutover(env, "retire", "--json")
        assert named.returncode == 2 and "green still has weight 10" in as_json(named)["reason"]
        assert chosen.returncode == 2 and "traffic is split" in as_json(chosen)["reason"]
        assert env.deployer.pids("green") == green and all(pid_alive(pid) for pid in green)
        release.send_signal(signal.SIGINT)
        assert release.wait(timeout=60) == 130, progress.text()
    finally:
        stop_process(release)


def test_after_retire_no_rollback_goes_to_the_stopped_color(env: Env, tmp_path: Path) -> None:
    with_meter(env, tmp_path)
    spec = env.spec
    spec["router"]["answer_ttl_seconds"] = 1
    spec["traffic_meter"]["settle_seconds"] = 0.5
    env.write_spec(spec)
    for image in ("v2", "v3"):  # v2 to green, then v3 to blue: green v2 is the last known good
        released = cutover(env, "release", "--image", image, "--strategy", "all-at-once")
        assert released.returncode == 0, released.stderr
    retired = cutover(env, "retire", "--wait", "--json")
    answer = as_json(retired)
    assert retired.returncode == 0 and answer["retired"] is True, retired.stderr
    assert any("last known good" in warning for warning in answer["warnings"])
    for force in ([], ["--force"]):
        rollback = cutover(env, "rollback", *force, "--json")
        assert rollback.returncode == 2, rollback.stderr
        assert env.weights() == {"blue": 100, "green": 0}


def test_a_log_rotated_before_the_first_look_still_counts_its_last_change(tmp_path: Path) -> None:
    """A request written, then the log truncated (logrotate's copytruncate) before retire ever
    looked: the empty file must not read as "no request since long ago"."""
    green = tmp_path / "green.log"
    green.write_text(json.dumps({"start_time": time.time()}) + "\n")
    green.write_text("")  # rotated: the request's line is gone
    (tmp_path / "blue.log").write_text("")
    meter = AccessLogMeter({"blue": tmp_path / "blue.log", "green": green}, lag_seconds=0)
    seen = meter.last_request_at("green", 0)
    assert seen is not None and seen >= time.time() - 5
