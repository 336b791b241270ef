"""The release state machine under injected faults (hypothesis explores the combinations)."""

from __future__ import annotations

import dataclasses
import itertools
import signal
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.analysis import CanaryAnalysis, MetricsError, Thresholds
from cutover.cancel import CancelScope
from cutover.machine import STATE_CHART, Gates, ReleaseMachine, Reporter, State
from cutover.model import COLORS, PAUSE, Traffic
from cutover.ports import Record
from cutover.release_state import (
    Build,
    DecisionTaken,
    ReleaseState,
    adopt,
    begin_release,
    decide,
    pause,
    resumed_pause,
)
from tests.pipelines.fakes import (
    Boom,
    FakeClock,
    FakeDeployer,
    FakeLock,
    FakeRouter,
    MemoryHistory,
    MemoryStateStore,
    ScriptedHealth,
)
from tests.pipelines.metrics_fixtures import Request, SeriesSource

GATES = Gates(
    ready_successes=2, ready_interval=1, ready_timeout=10, bake_seconds=6, health_interval=2, sync_timeout=5
)


def machine(
    router: FakeRouter,
    health: ScriptedHealth,
    lock: FakeLock | None = None,
    deployer: FakeDeployer | None = None,
    states: MemoryStateStore | None = None,
    history: MemoryHistory | None = None,
    cancel: CancelScope | None = None,
) -> tuple[ReleaseMachine, FakeLock, MemoryHistory]:
    lock = lock or FakeLock()
    history = history or MemoryHistory()
    m = ReleaseMachine(
        "test",
        router,
        deployer or FakeDeployer(),
        lock,
        history,
        health,
        GATES,
        states=states or MemoryStateStore(),
        clock=FakeClock(),
        actor="tester",
        wall_clock=itertools.count(1000).__next__,
        cancel=cancel,
    )
    return m, lock, history


def test_release_promotes_through_every_canary_step() -> None:
    router = FakeRouter(Traffic.all_on("blue", generation=7))
    m, lock, history = machine(router, ScriptedHealth({}))
    result = m.release("v2", (10, 50, 100))
    assert result.state == State.SUCCEEDED and result.exit_code == 0
    assert [t.green for t, _ in router.sets] == [10, 50, 100]
    assert router.traffic == Traffic(0, 100, 10)
    assert lock.held_by is None
    (record,) = history.records.values()
    assert (record.operation, record.outcome, record.to_color, record.image) == (
        "release",
        "succeeded",
        "green",
        "v2",
    )


def test_refuses_a_split_traffic_without_resume_and_changes_nothing() -> None:
    router = FakeRouter(Traffic(90, 10, 3))
    m, lock, _ = machine(router, ScriptedHealth({}))
    result = m.release("v2", (100,))
    assert result.state == State.REFUSED and result.exit_code == 2
    assert router.sets == [] and router.traffic == Traffic(90, 10, 3) and lock.held_by is None


def test_refuses_when_the_active_color_is_unhealthy() -> None:
    router = FakeRouter(Traffic.all_on("blue"))
    m, _, _ = machine(router, ScriptedHealth({"blue": iter([False])}))
    result = m.release("v2", (100,))
    assert result.state == State.REFUSED and "nowhere" not in result.reason and "blue" in result.reason
    assert router.sets == []


def test_a_held_lock_exits_3_and_changes_nothing() -> None:
    router = FakeRouter(Traffic.all_on("blue"))
    lock = FakeLock()
    lock.held_by = "someone-else"
    m, _, history = machine(router, ScriptedHealth({}), lock=lock)
    result = m.release("v2", (100,))
    assert result.state == State.LOCKED and result.exit_code == 3
    assert router.sets == [] and history.records == {} and lock.held_by == "someone-else"


def released(health: ScriptedHealth | None = None) -> tuple[FakeRouter, MemoryStateStore, FakeDeployer]:
    """blue v1 live, then v2 released to green through every gate."""
    router, states, deployer = (
        FakeRouter(Traffic.all_on("blue", generation=4)),
        MemoryStateStore(),
        FakeDeployer(),
    )
    m, _, _ = machine(router, health or ScriptedHealth({}), deployer=deployer, states=states)
    assert m.release("v2", (10, 100)).state == State.SUCCEEDED
    return router, states, deployer


def test_rollback_goes_to_the_last_known_good_and_a_second_one_changes_nothing() -> None:
    router, states, deployer = released()
    assert states.state.last_good == Build("blue", "v1")
    m, _, _ = machine(router, ScriptedHealth({}), deployer=deployer, states=states)
    first = m.rollback()
    assert first.state == State.SUCCEEDED and router.traffic.same_weights(Traffic.all_on("blue"))
    sets = len(router.sets)
    second = m.rollback()
    assert second.state == State.SUCCEEDED and second.exit_code == 0
    assert "nothing to roll back" in second.reason and len(router.sets) == sets
    assert router.traffic.same_weights(Traffic.all_on("blue"))
    assert states.state.build("green").verified is False  # v2 was rolled back: never a target again
    assert "rolled back" in states.state.build("green").note


def test_rollback_on_a_new_environment_never_moves_onto_the_idle_color() -> None:
    router = FakeRouter(Traffic.all_on("blue", generation=0))
    m, _, _ = machine(router, ScriptedHealth({}), deployer=FakeDeployer(images={"blue": "v1", "green": "v9"}))
    result = m.rollback()
    assert result.state == State.SUCCEEDED and "nothing to roll back" in result.reason
    assert router.sets == []


def test_rollback_after_a_release_that_never_moved_traffic_stays_put_and_abandons_it() -> None:
    router, states = FakeRouter(Traffic.all_on("blue")), MemoryStateStore()
    m, _, history = machine(router, ScriptedHealth({}), states=states, lock=FakeLock(lose_after=0))
    lost = m.release("v2", (100,))  # its lease is lost before the first step: like a killed release
    assert lost.state == State.FAILED and router.sets == []
    m, _, _ = machine(router, ScriptedHealth({}), states=states, history=history)
    result = m.rollback()
    assert result.state == State.SUCCEEDED, result.reason
    assert router.sets == [] and states.state.release is None


def test_rollback_refuses_an_unhealthy_last_good_and_force_moves_anyway() -> None:
    router, states, deployer = released()
    m, _, history = machine(
        router, ScriptedHealth({"blue": iter([False] * 10)}), deployer=deployer, states=states
    )
    refused = m.rollback()
    assert refused.state == State.REFUSED and refused.exit_code == 2 and router.traffic.green == 100
    forced = m.rollback(force=True)
    assert forced.state == State.SUCCEEDED, forced.reason
    assert router.traffic.same_weights(Traffic.all_on("blue"))
    assert history.records[forced.record_id].details["forced"] is True


def test_rollback_refuses_when_no_build_is_known_good() -> None:
    router = FakeRouter(Traffic(50, 50, 3))  # split, never recorded: nothing is known good
    m, _, _ = machine(router, ScriptedHealth({}))
    result = m.rollback()
    assert result.state == State.REFUSED and "no known good" in result.reason and router.sets == []


def test_a_hand_edit_of_the_weights_is_never_overwritten_by_the_restore() -> None:
    router = FakeRouter(Traffic.all_on("blue", generation=2))
    health = ScriptedHealth({})

    def console_edit(target: Traffic) -> None:
        if target.green == 10:  # after our first step lands, a human sets 70/30, generation untouched
            router.on_set = lambda _t: None
            router.after_set = lambda: setattr(router, "traffic", Traffic(70, 30, router.traffic.generation))
        else:
            router.after_set = lambda: None

    router.on_set = console_edit
    m, lock, history = machine(router, health)
    result = m.release("v2", (10, 50, 100), bake=0)
    assert result.state == State.UNRESTORED and result.exit_code == 4
    assert router.traffic == Traffic(70, 30, 3)  # the human's weights, untouched
    assert "someone else" in result.reason and lock.held_by is None
    assert history.records[result.record_id].outcome == State.UNRESTORED.value


def test_shift_gates_the_color_that_gains_whichever_is_named() -> None:
    router = FakeRouter(Traffic(50, 50, 1))
    m, _, _ = machine(router, ScriptedHealth({"blue": iter([False] * 5)}))
    result = m.shift("green", 0)  # blue would take 100%
    assert result.state == State.REFUSED and "blue" in result.reason and router.sets == []


def killed_at_ten_percent() -> tuple[FakeRouter, MemoryStateStore]:
    """What a release of v2 to green leaves when its process is killed during the 10% bake."""
    blue = Traffic.all_on("blue", generation=1)
    state = adopt(ReleaseState(), blue, {"blue": "v1", "green": None}, now=0)
    state = begin_release(state, "rec-killed", "v2", "green", blue, now=1)
    return FakeRouter(Traffic(90, 10, 2)), MemoryStateStore(dataclasses.replace(state, version=2))


def test_resume_finishes_only_the_recorded_release_with_its_image() -> None:
    fresh = FakeRouter(Traffic.all_on("blue"))
    m, _, _ = machine(fresh, ScriptedHealth({}))
    nothing = m.release(None, (100,), resume=True)
    assert nothing.state == State.REFUSED and "no interrupted release" in nothing.reason and fresh.sets == []

    router, states = killed_at_ten_percent()
    deployer = FakeDeployer()
    m, _, _ = machine(router, ScriptedHealth({}), states=states, deployer=deployer)
    other_image = m.release("v3", (100,), resume=True)
    assert other_image.state == State.REFUSED and "v2" in other_image.reason and router.sets == []
    new_release = m.release("v3", (100,))
    assert new_release.state == State.REFUSED and router.sets == []
    done = m.release(None, (10, 50, 100), resume=True)
    assert done.state == State.SUCCEEDED, done.reason
    assert [t.green for t, _ in router.sets] == [50, 100]
    assert deployer.images["green"] is None  # a color that takes traffic is never redeployed
    assert states.state.build("green") == dataclasses.replace(
        states.state.build("green"), image="v2", verified=True
    )
    assert states.state.release is None and states.state.last_good == Build("blue", "v1")


def test_every_transition_taken_is_in_the_chart() -> None:
    assert all(STATE_CHART[s] <= set(State) for s in STATE_CHART)
    terminal = {s for s, nxt in STATE_CHART.items() if not nxt}
    assert terminal == {
        State.SUCCEEDED,
        State.FAILED,
        State.UNRESTORED,
        State.CANCELLED,
        State.REFUSED,
        State.LOCKED,
    }


def test_a_history_write_that_fails_after_success_is_a_warning_not_a_failure() -> None:
    router = FakeRouter(Traffic.all_on("blue"))
    history = MemoryHistory()
    m, _, _ = machine(router, ScriptedHealth({}), history=history)
    original = history.write

    def failing_final(record: Record) -> None:
        if record.outcome != "running":
            raise Boom("dynamodb unavailable")
        original(record)

    history.write = failing_final  # type: ignore[method-assign]
    result = m.release("v2", (100,))
    assert result.state == State.SUCCEEDED and result.exit_code == 0
    assert any("history" in w for w in result.warnings)


@dataclass(frozen=True)
class Fault:
    deploy_fails: bool
    green_health: list[bool]
    smoke_ok: bool
    fail_set_at: int | None
    fail_after_apply: bool
    lose_lock_after: int | None
    steps: tuple[int, ...]
    bake: float

    @property
    def none(self) -> bool:
        return (
            not self.deploy_fails
            and all(self.green_health)
            and self.smoke_ok
            and self.fail_set_at is None
            and self.lose_lock_after is None
        )


faults = st.builds(
    Fault,
    deploy_fails=st.booleans(),
    green_health=st.lists(st.booleans(), max_size=12),
    smoke_ok=st.booleans(),
    fail_set_at=st.one_of(st.none(), st.integers(1, 4)),
    fail_after_apply=st.booleans(),
    lose_lock_after=st.one_of(st.none(), st.integers(0, 8)),
    steps=st.sampled_from([(100,), (10, 50, 100), (25, 50, 75, 100), (1, 100)]),
    bake=st.sampled_from([0.0, 6.0]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults)
def test_whatever_fails_traffic_ends_promoted_or_exactly_as_before(fault: Fault) -> None:
    before = Traffic.all_on("blue", generation=11)
    health = ScriptedHealth({"green": iter(fault.green_health)}, smoke_ok=fault.smoke_ok)
    moved_onto_unhealthy: list[Traffic] = []
    router = FakeRouter(before, fail_set_at=fault.fail_set_at, fail_after_apply=fault.fail_after_apply)
    checked_since_last_set = [0]  # length of the health log at the previous set

    def check_gate(target: Traffic) -> None:
        """Adding weight needs a passing check of green since the previous change."""
        previous = router.traffic
        fresh = [passed for color, passed in health.log[checked_since_last_set[0] :] if color == "green"]
        if target.green > previous.green and (not fresh or fresh[-1] is not True):
            moved_onto_unhealthy.append(target)
        checked_since_last_set[0] = len(health.log)

    router.on_set = check_gate
    lock = FakeLock(lose_after=fault.lose_lock_after)
    m, _, history = machine(router, health, lock=lock, deployer=FakeDeployer(fail=fault.deploy_fails))

    result = m.release("v2", fault.steps, bake=fault.bake)

    final = router.traffic
    assert final.same_weights(Traffic.all_on("green")) or final.same_weights(before), final
    assert (result.state == State.SUCCEEDED) == final.same_weights(Traffic.all_on("green"))
    assert result.state in (State.SUCCEEDED, State.FAILED)
    # the outcome follows from where traffic ended, whatever the exception was
    assert (result.state == State.FAILED) == (final.same_weights(before) and result.state != State.SUCCEEDED)
    assert moved_onto_unhealthy == []
    assert lock.held_by is None
    assert all(nxt in STATE_CHART[prev] for prev, nxt in m.transitions)
    (record,) = history.records.values()
    assert record.outcome == result.state.value and record.operation == "release"
    assert record.outcome != "running"
    if result.state == State.FAILED:
        assert result.reason and result.exit_code == 1
    if fault.none:
        assert result.state == State.SUCCEEDED, result.reason


class SignalAt:
    """Proxies an adapter; the n-th call made to any proxied adapter delivers a signal
    before it runs or after it took effect (its answer still on the way), as if SIGINT or
    SIGTERM arrived at that very point of the operation."""

    def __init__(
        self, inner: object, scope: CancelScope, calls: list[int], at: int, signum: int, after: bool
    ) -> None:
        self._inner, self._scope, self._calls, self._at, self._signum = inner, scope, calls, at, signum
        self._after = after

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls[0] += 1
            now = self._calls[0] == self._at
            if now and not self._after:
                self._scope.deliver(self._signum)
            answer = attribute(*args, **kwargs)
            if now and self._after:
                self._scope.deliver(self._signum)
            return answer

        return call


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    at=st.integers(1, 60),
    signum=st.sampled_from([signal.SIGINT, signal.SIGTERM]),
    steps=st.sampled_from([(100,), (10, 50, 100), (1, 100)]),
    operation=st.sampled_from(["release", "rollback", "shift"]),
    after=st.booleans(),
)
def test_a_cancel_at_any_step_restores_and_exits_128_plus_the_signal(
    at: int, signum: int, steps: tuple[int, ...], operation: str, after: bool
) -> None:
    if operation == "release":
        router, states = FakeRouter(Traffic.all_on("blue", generation=5)), MemoryStateStore()
    else:
        router, states, _ = released()
    before = router.traffic
    scope, calls = CancelScope(), [0]

    def wrap(inner: object) -> Any:
        return SignalAt(inner, scope, calls, at, signum, after)

    lock, history = FakeLock(), MemoryHistory()
    m = ReleaseMachine(
        "test",
        wrap(router),
        wrap(FakeDeployer()),
        wrap(lock),
        wrap(history),
        wrap(ScriptedHealth({})),
        GATES,
        states=wrap(states),
        reporter=wrap(Reporter()),
        clock=wrap(FakeClock()),
        actor="tester",
        wall_clock=itertools.count(1000).__next__,
        cancel=scope,
    )
    if operation == "release":
        result = m.release("v2", steps, bake=6)
    elif operation == "rollback":
        result = m.rollback()
    else:
        result = m.shift("blue", 50)
    assert lock.held_by is None
    assert all(nxt in STATE_CHART[prev] for prev, nxt in m.transitions)
    assert all(r.outcome != "running" for r in history.records.values())
    if scope.received is None or result.state == State.SUCCEEDED:
        return  # no signal came, or it came once the outcome was decided (it stands)
    assert result.state == State.CANCELLED, result
    assert result.exit_code == 128 + signum
    assert router.traffic.same_weights(before), (router.traffic, before)
    if result.record_id in history.records:
        assert history.records[result.record_id].outcome == "cancelled"
    assert states.state.release is None or operation != "release"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["release", "rollback", "shift-green", "shift-blue"]),
            st.booleans(),  # the target passes its gates
        ),
        min_size=1,
        max_size=8,
    )
)
def test_rollback_never_lands_on_a_build_that_did_not_pass_its_gates(plan: list[tuple[str, bool]]) -> None:
    router, states, deployer = FakeRouter(Traffic.all_on("blue")), MemoryStateStore(), FakeDeployer()
    passed_gates: set[tuple[str, str | None]] = {("blue", "v1")}  # live when cutover first saw it
    rolled_back_from: set[tuple[str, str | None]] = set()
    for number, (operation, healthy) in enumerate(plan):
        idle = "green" if router.traffic.active == "blue" else "blue"
        health = ScriptedHealth({} if healthy else {idle: iter([False] * 100)})
        m, _, _ = machine(router, health, deployer=deployer, states=states)
        before = router.traffic
        if operation == "release":
            result = m.release(f"v{number + 2}", (50, 100), bake=0)
            if result.state == State.SUCCEEDED:
                passed_gates.add((idle, deployer.images[idle]))
        elif operation == "rollback":
            leaving = {(c, deployer.images[c]) for c in COLORS if before.weight(c) > 0}
            result = m.rollback()
            landed = router.traffic.active
            if result.state == State.SUCCEEDED and not before.same_weights(router.traffic):
                assert landed is not None
                build = (landed, deployer.images[landed])
                assert build in passed_gates and build not in rolled_back_from, (build, plan)
                rolled_back_from |= leaving - {build}
            assert result.state != State.SUCCEEDED or router.traffic.active == states.state.last_good.color  # type: ignore[union-attr]
        else:
            result = m.shift("green" if operation == "shift-green" else "blue", 100)
        assert result.state in (State.SUCCEEDED, State.FAILED, State.REFUSED), result


def test_a_second_rollback_that_loses_the_race_never_undoes_the_first() -> None:
    router, states, deployer = released()
    m, _, _ = machine(router, ScriptedHealth({}), deployer=deployer, states=states)

    def the_other_on_call_wins(target: Traffic) -> None:  # the same change lands first
        router.race = lambda _t: None
        router.traffic = Traffic(target.blue, target.green, router.traffic.generation + 1)

    router.race = the_other_on_call_wins
    result = m.rollback()
    assert result.state == State.SUCCEEDED and "meanwhile" in result.reason
    assert router.traffic.same_weights(Traffic.all_on("blue"))  # not "restored" onto green


def test_a_change_refused_whole_is_not_taken_for_ours_in_the_restore() -> None:
    router = FakeRouter(Traffic.all_on("blue", generation=3))

    def someone_else_makes_the_same_change(target: Traffic) -> None:
        router.race = lambda _t: None
        router.traffic = Traffic(target.blue, target.green, router.traffic.generation + 1)

    router.race = someone_else_makes_the_same_change
    m, _, _ = machine(router, ScriptedHealth({}))
    result = m.release("v2", (10, 100), bake=0)
    assert result.state == State.UNRESTORED and "someone else" in result.reason
    assert router.traffic == Traffic(90, 10, 4)  # theirs, untouched


def test_a_resume_that_fails_keeps_the_interrupted_release_to_resume_again() -> None:
    router, states = killed_at_ten_percent()
    m, _, _ = machine(
        router, ScriptedHealth({"green": iter([True, True, True, False] + [False] * 20)}), states=states
    )
    failed = m.release(None, (10, 50, 100), resume=True)
    assert failed.state == State.FAILED and router.traffic.same_weights(Traffic(90, 10))
    assert states.state.release is not None and states.state.release.image == "v2"
    m, _, _ = machine(router, ScriptedHealth({}), states=states)
    assert m.release(None, (10, 50, 100), resume=True).state == State.SUCCEEDED


def test_weights_both_zero_are_a_split_that_rollback_repairs() -> None:
    router, states, deployer = released()
    router.traffic = Traffic(0, 0, router.traffic.generation)  # a hand edit: both at 0
    m, _, _ = machine(router, ScriptedHealth({}), deployer=deployer, states=states)
    assert m.shift("blue", 100).state == State.REFUSED
    result = m.rollback()
    assert result.state == State.SUCCEEDED and router.traffic.same_weights(Traffic.all_on("blue"))


def analysed(source: SeriesSource) -> CanaryAnalysis:
    return CanaryAnalysis(source, Thresholds(min_requests=20, window_seconds=60))


def test_a_canary_that_breaches_its_error_budget_is_restored_and_says_why() -> None:
    source = SeriesSource()
    source.series["blue"] = [Request(200, 0.01)] * 200
    source.series["green"] = [Request(200, 0.01)] * 95 + [Request(500, 0.01)] * 5  # ready, 5% failing
    router = FakeRouter(Traffic.all_on("blue"))
    m, _, history = machine(router, ScriptedHealth({}))
    m.analysis = analysed(source)
    result = m.release("v2", (10, 50, 100), bake=6)
    assert result.state == State.FAILED and router.traffic.same_weights(Traffic.all_on("blue"))
    assert result.reason.startswith("canary analysis: green 5xx share 5.0% vs blue 0.0%")
    assert "> 1.0 allowed" in result.reason
    assert history.records[result.record_id].details["analysis"][-1]["passed"] is False


def test_a_slower_canary_is_restored_on_p99() -> None:
    source = SeriesSource()
    source.series["blue"] = [Request(200, 0.05)] * 200
    source.series["green"] = [Request(200, 0.35)] * 200  # 300 ms slower
    router = FakeRouter(Traffic.all_on("blue"))
    m, _, _ = machine(router, ScriptedHealth({}))
    m.analysis = analysed(source)
    result = m.release("v2", (10, 100), bake=6)
    assert result.state == State.FAILED and "p99" in result.reason


def test_a_broken_metrics_source_fails_the_gate() -> None:
    source = SeriesSource()
    source.fail = MetricsError("prometheus unreachable")
    router = FakeRouter(Traffic.all_on("blue"))
    m, _, _ = machine(router, ScriptedHealth({}))
    m.analysis = analysed(source)
    failed = m.release("v2", (10, 100), bake=6)
    assert failed.state == State.FAILED and "could not read its metrics" in failed.reason
    assert router.traffic.same_weights(Traffic.all_on("blue"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    green_errors=st.integers(0, 30),
    blue_errors=st.integers(0, 10),
    green_latency=st.sampled_from([0.01, 0.05, 0.2, 0.5]),
)
def test_a_release_ends_restored_exactly_when_the_analysis_finds_a_breach(
    green_errors: int, blue_errors: int, green_latency: float
) -> None:
    source = SeriesSource()
    source.series["blue"] = [Request(500, 0.05)] * blue_errors + [Request(200, 0.05)] * (200 - blue_errors)
    source.series["green"] = [Request(500, green_latency)] * green_errors + [Request(200, green_latency)] * (
        200 - green_errors
    )
    verdict = analysed(source).check("green", "blue")
    router = FakeRouter(Traffic.all_on("blue"))
    m, _, _ = machine(router, ScriptedHealth({}))
    m.analysis = analysed(source)
    result = m.release("v2", (10, 100), bake=6)
    assert (result.state == State.FAILED) == (not verdict.passed)
    assert router.traffic.same_weights(Traffic.all_on("blue" if not verdict.passed else "green"))


def test_a_resumed_release_keeps_its_pause_and_a_failed_wait_keeps_it_resumable() -> None:
    half = Traffic(50, 50, 3)
    blue = Traffic.all_on("blue", generation=1)
    state = adopt(ReleaseState(), blue, {"blue": "v1", "green": None}, now=0)
    state = begin_release(state, "rec-killed", "v2", "green", blue, now=1, steps=(10, 50, PAUSE, 100))
    router, states = FakeRouter(half), MemoryStateStore(dataclasses.replace(state, version=2))
    m, _, _ = machine(router, ScriptedHealth({}), states=states)
    other_steps = m.release(None, (10, 50, 100), resume=True)
    assert other_steps.state == State.REFUSED and "drop --strategy" in other_steps.reason
    waited = m.release(None, resume=True)  # its own steps: it stops at the pause again
    assert (State.SMOKE_TESTING, State.PAUSED) in m.transitions
    assert waited.state == State.FAILED and "no `cutover promote`" in waited.reason
    assert router.traffic.same_weights(half) and router.sets == []
    assert states.state.release is not None and states.state.release.steps == (10, 50, PAUSE, 100)


def test_the_first_decision_at_a_pause_stands() -> None:
    blue = Traffic.all_on("blue")
    state = adopt(ReleaseState(), blue, {"blue": "v1", "green": None}, now=0)
    state = pause(begin_release(state, "r", "v2", "green", blue, now=1, steps=(10, PAUSE, 100)), True)
    aborted = decide(state, "abort", "oncall")
    with pytest.raises(DecisionTaken):
        decide(aborted, "promote", "ci")
    with pytest.raises(DecisionTaken):
        resumed_pause(aborted, "promote")


def test_analysis_watches_the_pause_and_no_verdict_is_not_a_pass() -> None:
    source = SeriesSource()
    source.series["blue"] = [Request(200, 0.01)] * 200
    source.series["green"] = [Request(500, 0.01)] * 100 + [Request(200, 0.01)] * 100
    router = FakeRouter(Traffic.all_on("blue"))
    m, _, _ = machine(router, ScriptedHealth({}))
    m.analysis = analysed(source)
    paused = m.release("v2", (10, PAUSE, 100), bake=0)
    assert paused.state == State.FAILED and "5xx share" in paused.reason
    source.series["green"] = [Request(500, 0.01)] * 3  # three requests: never a verdict
    router = FakeRouter(Traffic.all_on("blue"))
    m, _, _ = machine(router, ScriptedHealth({}))
    m.analysis = analysed(source)
    silent = m.release("v2", (10, 100), bake=6)
    assert silent.state == State.FAILED and "no verdict before 100%" in silent.reason
    assert router.traffic.same_weights(Traffic.all_on("blue"))
    all_at_once = m.release("v2", (100,))
    assert all_at_once.state == State.REFUSED and "partial step" in all_at_once.reason


def test_a_release_never_starts_from_an_unverified_build() -> None:
    router, states, deployer = released()
    m, _, _ = machine(router, ScriptedHealth({}), deployer=deployer, states=states)
    assert m.rollback().state == State.SUCCEEDED  # green v2 rejected, blue v1 live
    router.traffic = Traffic(0, 100, router.traffic.generation)  # a console edit: all on green
    result = m.release("v3", (100,))
    assert result.state == State.REFUSED and "did not pass its" in result.reason
    assert states.state.last_good == Build("blue", "v1") and deployer.images["blue"] == "v1"
