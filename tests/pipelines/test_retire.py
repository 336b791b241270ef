"""`cutover retire` on the real machine with fakes at the edges; its traffic meters on a real
file and on moto's CloudWatch; the Pulumi deployer's retire on a fake stack."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from cutover.adapters.cloudwatch_metrics import AlbTarget
from cutover.adapters.pulumi_deployer import PulumiDeployer
from cutover.adapters.traffic_meter import AccessLogMeter, CloudWatchMeter, parse_time
from cutover.cancel import CancelScope
from cutover.machine import STATE_CHART, ReleaseMachine, RetirePolicy, State, weight_zero_since
from cutover.model import COLORS, Color, Traffic
from cutover.ports import MeterError, Record
from cutover.release_state import Build, ColorBuild, InFlight, ReleaseState, rollback_target
from tests.pipelines.fakes import (
    FakeClock,
    FakeDeployer,
    FakeLock,
    FakeRouter,
    MemoryHistory,
    MemoryStateStore,
    ScriptedHealth,
)

EPOCH = 1_800_000_000.0  # the fake wall clock's zero


class FakeMeter:
    def __init__(self, last: dict[str, float | None] | None = None, lag: float = 0.0) -> None:
        self.last: dict[str, float | None] = last or {}
        self.lag = lag
        self.fail = False
        self.calls: list[tuple[str, float]] = []

    @property
    def lag_seconds(self) -> float:
        return self.lag

    def last_request_at(self, color: Color, since: float) -> float | None:
        self.calls.append((color, since))
        if self.fail:
            raise MeterError("access log unreadable (scripted)")
        seen = self.last.get(color)
        return seen if seen is not None and seen >= since else None


class RetiringDeployer(FakeDeployer):
    def __init__(self) -> None:
        super().__init__()
        self.running = {"blue": True, "green": True}
        self.retired: list[str] = []
        self.fail_retire = False

    def retire(self, color: Color, progress: Callable[[str], None]) -> None:
        if self.fail_retire:
            raise RuntimeError("kubectl scale failed")
        progress(f"stopping {color}")
        self.retired.append(color)
        self.running[color] = False

    def is_retired(self, color: Color) -> bool:
        return not self.running[color]


class CountingLock(FakeLock):
    def __init__(self, on_acquire: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.acquired = 0
        self.on_acquire = on_acquire

    def acquire(self, owner: str, operation: str, *, force: bool = False) -> None:
        super().acquire(owner, operation, force=force)
        self.acquired += 1
        self.on_acquire()


class CancellingClock(FakeClock):
    """Delivers `signum` on the `at`-th sleep, as a Ctrl-C during the wait would."""

    def __init__(self, cancel: CancelScope, signum: int, at: int) -> None:
        super().__init__()
        self.cancel, self.signum, self.at, self.sleeps = cancel, signum, at, 0

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.sleeps == self.at:
            self.cancel.deliver(self.signum)
        super().sleep(seconds)


def moved_to_blue(finished_at: float) -> Record:
    """The release that put all traffic on blue, green's weight going to 0 at its end."""
    return Record(
        id="rel1",
        operation="release",
        actor="ci",
        env="test",
        started_at=finished_at - 30,
        from_traffic=Traffic(0, 100, 4),
        to_color="blue",
        to_traffic=Traffic(100, 0, 6),
        outcome="succeeded",
        finished_at=finished_at,
    )


class World:
    """One environment: blue live, green at weight 0, green's weight went to 0 `zero_ago`
    seconds before the wall clock's now."""

    def __init__(
        self, zero_ago: float | None = 100.0, last_green: float | None = None, lag: float = 0.0
    ) -> None:
        self.clock: FakeClock = FakeClock()
        self.router = FakeRouter(Traffic(100, 0, 6))
        self.deployer = RetiringDeployer()
        self.lock = CountingLock()
        self.history = MemoryHistory()
        if zero_ago is not None:
            self.history.write(moved_to_blue(EPOCH - zero_ago))
        state = ReleaseState(
            version=3,
            colors={
                "blue": ColorBuild(image="v2", verified=True, note="passed its gates in release rel1"),
                "green": ColorBuild(image="v1", verified=True, note="passed its gates in release rel0"),
            },
            last_good=Build("green", "v1"),
        )
        self.states = MemoryStateStore(state)
        self.meter = FakeMeter({"green": None if last_green is None else EPOCH - last_green}, lag)
        self.cancel = CancelScope()

    def wall(self) -> float:
        return EPOCH + self.clock.t

    def machine(self, deployer: Any = None) -> ReleaseMachine:
        return ReleaseMachine(
            "test",
            self.router,
            deployer or self.deployer,
            self.lock,
            self.history,
            ScriptedHealth({}),
            states=self.states,
            clock=self.clock,
            actor="oncall",
            wall_clock=self.wall,
            cancel=self.cancel,
        )

    def snapshot(self) -> tuple[Any, ...]:
        return (
            {k: r.to_dict() for k, r in self.history.records.items()},
            self.states.writes,
            self.router.traffic,
            dict(self.deployer.running),
        )


POLICY = RetirePolicy(answer_ttl_seconds=60, settle_seconds=30, wait_interval=5)


def assert_nothing_changed(world: World, before: tuple[Any, ...]) -> None:
    assert world.snapshot() == before
    assert world.deployer.retired == [] and world.lock.acquired == 0 and world.router.sets == []


# ------------------------------------------------------------------ refusals


def test_refuses_while_the_ttl_has_not_passed_and_changes_nothing() -> None:
    world = World(zero_ago=10)
    before = world.snapshot()
    result = world.machine().retire(world.meter, POLICY)
    assert result.state == State.REFUSED and result.exit_code == 2
    assert result.extra["retired"] is False and result.extra["color"] == "green"
    assert result.extra["wait_seconds"] == 50
    assert "safe in 50 s at the earliest (TTL 60 s since" in result.reason
    assert_nothing_changed(world, before)


def test_refuses_while_requests_are_recent_with_the_right_wait() -> None:
    world = World(zero_ago=100, last_green=4)
    before = world.snapshot()
    result = world.machine().retire(world.meter, POLICY)
    assert result.exit_code == 2 and result.extra["wait_seconds"] == 26
    assert result.reason.startswith(
        "green answered a request 4 s ago; retire is safe in 26 s at the earliest"
    )
    document = result.as_dict()
    assert (
        document["retired"] is False
        and document["wait_seconds"] == 26
        and document["reason"] == result.reason
    )
    assert document["verdict"]["last_request_at"] == EPOCH - 4
    assert_nothing_changed(world, before)


def test_the_meters_lag_is_waited_out_too() -> None:
    world = World(zero_ago=100, last_green=4, lag=10)
    result = world.machine().retire(world.meter, POLICY)
    assert result.extra["wait_seconds"] == 36 and "plus 10 s the traffic meter may lag" in result.reason


def test_a_color_that_still_has_weight_is_refused_with_what_to_run() -> None:
    world = World()
    world.router.traffic = Traffic(90, 10, 7)
    before = world.snapshot()
    result = world.machine().retire(world.meter, POLICY, "green")
    assert result.exit_code == 2
    assert (
        result.reason
        == "green still has weight 10; shift it to 0 first (cutover shift --to blue --weight 100)"
    )
    assert_nothing_changed(world, before)


@pytest.mark.parametrize("weights", [(50, 50), (0, 0)])
def test_no_default_color_when_it_is_ambiguous(weights: tuple[int, int]) -> None:
    world = World()
    world.router.traffic = Traffic(*weights, generation=7)
    result = world.machine().retire(world.meter, POLICY)
    assert result.exit_code == 2 and result.extra["color"] is None
    assert world.deployer.retired == [] and world.lock.acquired == 0


def test_a_deployer_without_retire_is_refused_not_stubbed() -> None:
    world = World()
    result = world.machine(deployer=FakeDeployer()).retire(world.meter, POLICY)
    assert result.exit_code == 2 and "not supported by this deployer (FakeDeployer)" in result.reason


def test_a_release_in_flight_to_the_color_is_refused() -> None:
    world = World()
    inflight = InFlight("rel2", "v3", "green", {"blue": 100, "green": 0}, EPOCH - 5)
    world.states.state = ReleaseState(version=4, colors=world.states.state.colors, release=inflight)
    result = world.machine().retire(world.meter, POLICY)
    assert result.exit_code == 2 and "release rel2 of v3 to green did not finish" in result.reason
    assert world.deployer.retired == []


def test_a_meter_that_cannot_read_fails_with_nothing_changed() -> None:
    world = World()
    world.meter.fail = True
    before = world.snapshot()
    result = world.machine().retire(world.meter, POLICY)
    assert result.state == State.FAILED and result.exit_code == 1 and "nothing was changed" in result.reason
    assert_nothing_changed(world, before)


# ------------------------------------------------------------------ retiring


def test_retires_when_safe_under_the_lock_and_records_it() -> None:
    world = World(zero_ago=120, last_green=40)
    result = world.machine().retire(world.meter, POLICY)
    assert result.state == State.SUCCEEDED and result.exit_code == 0, result.reason
    assert world.deployer.retired == ["green"] and world.lock.acquired == 1 and world.lock.held_by is None
    assert result.extra == {
        "retired": True,
        "color": "green",
        "wait_seconds": 0,
        "verdict": result.extra["verdict"],
    }
    assert result.reason.startswith("green retired: its instances are stopped")
    (record,) = [r for r in world.history.records.values() if r.operation == "retire"]
    assert record.outcome == "succeeded" and record.to_color == "green"
    assert record.from_traffic == record.to_traffic == Traffic(100, 0, 6)
    assert world.router.sets == []  # traffic is not touched
    state = world.states.state
    assert not state.build("green").verified and state.build("green").image is None
    assert "retired by oncall" in state.build("green").note
    assert rollback_target(state) is None  # never a rollback onto stopped instances
    assert any("last known good" in warning for warning in result.warnings)


def test_a_shift_between_the_look_and_the_lock_is_refused_under_the_lock() -> None:
    world = World(zero_ago=120)
    world.lock.on_acquire = lambda: setattr(world.router, "traffic", Traffic(90, 10, 7))
    result = world.machine().retire(world.meter, POLICY)
    assert result.state == State.REFUSED and result.exit_code == 2
    assert "green still has weight 10" in result.reason
    assert world.deployer.retired == [] and world.lock.held_by is None
    (record,) = [r for r in world.history.records.values() if r.operation == "retire"]
    assert record.outcome == "refused"


def test_a_request_between_the_look_and_the_lock_is_refused_under_the_lock() -> None:
    world = World(zero_ago=120)
    world.lock.on_acquire = lambda: world.meter.last.update(green=world.wall() - 1)
    result = world.machine().retire(world.meter, POLICY)
    assert result.exit_code == 2 and "answered a request 1 s ago" in result.reason
    assert world.deployer.retired == [] and result.extra["wait_seconds"] == 29


def test_lock_held_exits_3_and_stops_nothing() -> None:
    world = World(zero_ago=120)
    world.lock.held_by = "ci@runner"
    result = world.machine().retire(world.meter, POLICY)
    assert result.state == State.LOCKED and result.exit_code == 3
    assert world.deployer.retired == [] and result.extra["retired"] is False


def test_an_already_retired_color_is_nothing_to_do() -> None:
    world = World(zero_ago=5)  # not safe either: nothing to do comes first
    world.deployer.running["green"] = False
    result = world.machine().retire(world.meter, POLICY)
    assert (
        result.exit_code == 0
        and result.reason == "nothing to do: green is already retired (runs no instance)"
    )
    assert world.deployer.retired == []


def test_a_failed_stop_exits_1_with_traffic_untouched() -> None:
    world = World(zero_ago=120)
    world.deployer.fail_retire = True
    result = world.machine().retire(world.meter, POLICY)
    assert result.state == State.FAILED and result.exit_code == 1
    assert "stopping green failed: kubectl scale failed" in result.reason
    assert world.router.sets == [] and world.router.traffic == Traffic(100, 0, 6)


# ------------------------------------------------------------------ --wait


def test_wait_looks_again_until_safe_then_retires() -> None:
    world = World(zero_ago=10, last_green=4)  # TTL ends in 50 s, requests quiet in 26 s
    machine = world.machine()
    result = machine.retire(world.meter, POLICY, wait=True)
    assert result.exit_code == 0 and world.deployer.retired == ["green"]
    assert 50 <= world.clock.t <= 50 + POLICY.wait_interval  # not before it was safe, not much later
    walked = [to for _, to in machine.transitions]
    assert walked[:2] == [State.SETTLING, State.LOCKING] and State.RETIRING in walked
    for frm, to in machine.transitions:
        assert to in STATE_CHART[frm]


def test_wait_starts_over_when_a_request_arrives_meanwhile() -> None:
    world = World(zero_ago=100, last_green=4)
    arrivals = iter([None, world.wall() + 20])  # a request 20 s into the wait

    def sleep(seconds: float) -> None:
        FakeClock.sleep(world.clock, seconds)
        if world.clock.t >= 20 and (late := next(arrivals, None)) is not None:
            world.meter.last["green"] = late

    world.clock.sleep = sleep  # type: ignore[method-assign]
    next(arrivals)
    result = world.machine().retire(world.meter, POLICY, wait=True)
    assert result.exit_code == 0 and world.clock.t >= 20 + 30


def test_wait_counts_from_its_first_look_when_history_cannot_tell() -> None:
    world = World(zero_ago=None)
    refused = world.machine().retire(world.meter, POLICY)
    assert (
        refused.exit_code == 2 and "history has no record of when green's weight went to 0" in refused.reason
    )
    waited = world.machine().retire(world.meter, POLICY, wait=True)
    assert waited.exit_code == 0 and world.clock.t >= 60


def test_wait_gives_up_after_its_timeout() -> None:
    world = World(zero_ago=100, last_green=1)

    def sleep(seconds: float) -> None:  # a request at every look: never quiet
        FakeClock.sleep(world.clock, seconds)
        world.meter.last["green"] = world.wall()

    world.clock.sleep = sleep  # type: ignore[method-assign]
    before = world.snapshot()
    policy = RetirePolicy(answer_ttl_seconds=60, settle_seconds=30, wait_interval=5, wait_timeout=60)
    result = world.machine().retire(world.meter, policy, wait=True)
    assert result.exit_code == 2 and result.reason.startswith("not safe after waiting 60 s")
    assert_nothing_changed(world, before)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_waiting_cancels_with_nothing_changed(signum: int, code: int) -> None:
    world = World(zero_ago=10)
    world.clock = CancellingClock(world.cancel, signum, at=2)
    before = world.snapshot()
    result = world.machine().retire(world.meter, POLICY, wait=True)
    assert result.state == State.CANCELLED and result.exit_code == code
    assert "nothing was changed" in result.reason and result.extra["retired"] is False
    assert_nothing_changed(world, before)


# ------------------------------------------------------------------ when the weight went to 0


def record(
    n: int, before: tuple[int, int] | None, after: tuple[int, int] | None, finished: bool = True
) -> Record:
    return Record(
        id=f"r{n}",
        operation="shift",
        actor="a",
        env="test",
        started_at=float(n * 100),
        from_traffic=Traffic(*before) if before else None,
        to_traffic=Traffic(*after) if after else None,
        finished_at=float(n * 100 + 10) if finished else None,
    )


def test_weight_zero_since_reads_history_conservatively() -> None:
    moved = [record(3, (0, 0), (0, 0)), record(2, (100, 0), (100, 0)), record(1, (90, 10), (100, 0))]
    assert weight_zero_since("green", moved) == 110  # the end of the shift that moved it to 0
    by_hand = [record(3, (100, 0), (100, 0)), record(2, (100, 0), (100, 0)), record(1, (50, 50), (50, 50))]
    assert weight_zero_since("green", by_hand) == 200  # first seen at 0 by the record after
    last_by_hand = [record(1, (50, 50), (50, 50))]
    assert weight_zero_since("green", last_by_hand) is None  # nobody saw it at 0 yet
    died = [record(2, (100, 0), None, finished=False), record(1, (0, 100), None, finished=False)]
    assert weight_zero_since("green", died) == 200
    never = [record(2, (100, 0), (100, 0)), record(1, (100, 0), (100, 0)), record(0, None, None)]
    assert weight_zero_since("green", never) == 100  # at 0 already when history begins
    assert weight_zero_since("green", []) is None


# ------------------------------------------------------------------ access-log meter


def test_access_log_reads_the_newest_start_time_and_skips_garbage(tmp_path: Path) -> None:
    green = tmp_path / "green.log"
    lines = [
        json.dumps({"start_time": "2026-05-04T12:00:01.250Z", "path": "/a"}),
        "",
        "not json at all",
        json.dumps(["a", "list"]),
        json.dumps({"start_time": "2026-05-04T14:00:05+02:00"}),  # 12:00:05 UTC, the newest
        json.dumps({"start_time": "yesterday"}),
        json.dumps({"no_time": 1}),
        json.dumps({"start_time": "2026-05-04T11:59:00"}),  # no offset: UTC
        '{"start_time": "2026-05-04T12:59',  # a line still being written
    ]
    green.write_text("\n".join(lines))
    (tmp_path / "blue.log").write_text("")
    meter = AccessLogMeter({"blue": tmp_path / "blue.log", "green": green}, lag_seconds=0)
    newest = datetime(2026, 5, 4, 12, 0, 5, tzinfo=UTC).timestamp()
    assert meter.last_request_at("green", 0) == newest
    assert meter.last_request_at("green", newest + 1) is None  # nothing since then
    # Empty: no request yet, or a log just rotated; the file's last change bounds its requests.
    blue_changed = (tmp_path / "blue.log").stat().st_mtime
    assert meter.last_request_at("blue", 0) == blue_changed
    assert meter.last_request_at("blue", blue_changed + 1) is None
    assert meter.lag_seconds == 0


def test_access_log_epoch_numbers_and_a_configured_field(tmp_path: Path) -> None:
    log = tmp_path / "g.log"
    log.write_text('{"ts": 1800000000.5}\n{"ts": 1700000000}\n{"ts": true}\n')
    meter = AccessLogMeter({"blue": log, "green": log}, time_field="ts")
    assert meter.last_request_at("green", 0) == 1800000000.5
    assert parse_time("2026-05-04T12:00:01Z") == datetime(2026, 5, 4, 12, 0, 1, tzinfo=UTC).timestamp()
    assert parse_time(True) is None and parse_time(-1) is None and parse_time(float("nan")) is None


def test_access_log_that_cannot_tell_is_an_error_not_silence(tmp_path: Path) -> None:
    log = tmp_path / "g.log"
    log.write_text('{"start_time": "2026-05-04T12:00:01Z"}\n')
    wrong_field = AccessLogMeter({"blue": log, "green": log}, time_field="timestamp")
    with pytest.raises(MeterError, match=r"none of the 1 lines .* has a readable `timestamp`"):
        wrong_field.last_request_at("green", 0)
    missing = AccessLogMeter({"blue": log, "green": tmp_path / "absent.log"})
    with pytest.raises(MeterError, match="cannot read green's access log"):
        missing.last_request_at("green", 0)


# ------------------------------------------------------------------ CloudWatch meter (moto)

LB = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/ledger-{c}/50dc6c495c0c9188"
TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/ledger-{c}/73e2d6bc24d8a067"


@pytest.fixture
def cloudwatch(aws: None) -> Iterator[Any]:
    yield boto3.client("cloudwatch", region_name="eu-west-1")


def put_requests(client: Any, color: str, at: datetime, count: float) -> None:
    client.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[
            {
                "MetricName": "RequestCount",
                "Dimensions": AlbTarget(LB.format(c=color), TG.format(c=color)).dimensions(),
                "Timestamp": at,
                "Value": count,
                "Unit": "Count",
            }
        ],
    )


def test_cloudwatch_meter_reports_the_end_of_the_newest_minute_with_requests(cloudwatch: Any) -> None:
    now = datetime.now(UTC).replace(second=20, microsecond=0)  # the meter's clock
    minute = now.replace(second=0) - timedelta(minutes=5)
    put_requests(cloudwatch, "green", minute - timedelta(minutes=3) + timedelta(seconds=10), 40)
    put_requests(cloudwatch, "green", minute + timedelta(seconds=12), 3)  # the newest with requests
    put_requests(cloudwatch, "green", minute + timedelta(minutes=2, seconds=5), 0)  # a zero: no request
    put_requests(cloudwatch, "blue", now - timedelta(seconds=10), 500)  # the other color, this minute
    targets: dict[Color, AlbTarget] = {c: AlbTarget(LB.format(c=c), TG.format(c=c)) for c in COLORS}
    meter = CloudWatchMeter(targets, client=cloudwatch, lag_seconds=60, clock=now.timestamp)
    since = (now - timedelta(minutes=30)).timestamp()
    assert meter.last_request_at("green", since) == (minute + timedelta(seconds=60)).timestamp()
    assert meter.last_request_at("blue", since) == now.timestamp()  # capped at now
    assert meter.last_request_at("green", (minute + timedelta(minutes=1)).timestamp()) is None
    assert meter.lag_seconds == 60


def test_cloudwatch_meter_without_datapoints_sees_no_request(cloudwatch: Any) -> None:
    targets: dict[Color, AlbTarget] = {c: AlbTarget(LB.format(c=c), TG.format(c=c)) for c in COLORS}
    meter = CloudWatchMeter(targets, client=cloudwatch)
    assert meter.last_request_at("green", datetime.now(UTC).timestamp() - 3600) is None


# ------------------------------------------------------------------ Pulumi deployer


class ColorsStack:
    def __init__(self, colors: str | None, result: str = "succeeded") -> None:
        self.config: dict[str, str] = {"cutover:greenImage": "v1"}
        if colors is not None:
            self.config["cutover:colors"] = colors
        self.result = result
        self.ups: list[tuple[list[str], dict[str, str]]] = []

    def set_config(self, key: str, value: str) -> None:
        self.config[key] = value

    def get_config(self, key: str) -> str | None:
        return self.config.get(key)

    def outputs(self) -> dict[str, Any]:
        return {"cutover_env": {"colors": {"green": {"urns": ["urn:green"]}}}}

    def up(self, targets: list[str], on_output: Callable[[str], None], env: Mapping[str, str]) -> str:
        self.ups.append((targets, dict(self.config)))
        return self.result


def test_pulumi_retire_scales_the_color_to_zero_and_a_deploy_scales_it_back() -> None:
    stack = ColorsStack('{"blue": {"replicas": 3}, "green": {"replicas": 3}}')
    deployer = PulumiDeployer(stack)
    assert not deployer.is_retired("green")
    deployer.retire("green", lambda _line: None)
    ((targets, during),) = stack.ups
    assert targets == ["urn:green"]
    assert json.loads(during["cutover:colors"])["green"]["replicas"] == 0
    assert json.loads(during["cutover:colors"])["blue"] == {"replicas": 3}
    assert deployer.is_retired("green")
    deployer.deploy("green", "v3", lambda _line: None)
    assert json.loads(stack.ups[-1][1]["cutover:colors"])["green"] == {"replicas": 3}
    assert not deployer.is_retired("green")


def test_pulumi_retire_that_fails_puts_the_config_back() -> None:
    stack = ColorsStack(None, result="failed")
    with pytest.raises(RuntimeError, match="pulumi up for green ended failed"):
        PulumiDeployer(stack).retire("green", lambda _line: None)
    assert json.loads(stack.config["cutover:colors"]) == {}  # the program's defaults, as before
    assert not PulumiDeployer(stack).is_retired("green")
