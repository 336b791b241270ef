"""The release state machine under injected faults (hypothesis explores the combinations)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.machine import STATE_CHART, Gates, ReleaseMachine, State
from cutover.model import Traffic
from tests.pipelines.fakes import FakeClock, FakeDeployer, FakeLock, FakeRouter, MemoryHistory, ScriptedHealth

GATES = Gates(
    ready_successes=2, ready_interval=1, ready_timeout=10, bake_seconds=6, health_interval=2, sync_timeout=5
)


def machine(
    router: FakeRouter,
    health: ScriptedHealth,
    lock: FakeLock | None = None,
    deployer: FakeDeployer | None = None,
) -> tuple[ReleaseMachine, FakeLock, MemoryHistory]:
    lock = lock or FakeLock()
    history = MemoryHistory()
    m = ReleaseMachine(
        "test",
        router,
        deployer or FakeDeployer(),
        lock,
        history,
        health,
        GATES,
        clock=FakeClock(),
        actor="tester",
        wall_clock=itertools.count(1000).__next__,
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


def test_rollback_goes_back_in_one_change_and_refuses_an_unhealthy_target() -> None:
    router = FakeRouter(Traffic.all_on("green", generation=4))
    m, _, _ = machine(router, ScriptedHealth({"blue": iter([False])}))
    refused = m.rollback()
    assert refused.state == State.REFUSED and router.sets == []
    forced = m.rollback(force=True)
    assert forced.state == State.SUCCEEDED
    assert [t for t, _ in router.sets] == [Traffic(100, 0)] and router.traffic.active == "blue"


def test_every_transition_taken_is_in_the_chart() -> None:
    assert all(STATE_CHART[s] <= set(State) for s in STATE_CHART)
    terminal = {s for s, nxt in STATE_CHART.items() if not nxt}
    assert terminal == {State.SUCCEEDED, State.FAILED, State.REFUSED, State.LOCKED}


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
    assert moved_onto_unhealthy == []
    assert lock.held_by is None
    (record,) = history.records.values()
    assert record.outcome == result.state.value and record.operation == "release"
    if result.state == State.FAILED:
        assert result.reason and result.exit_code == 1
    if fault.none:
        assert result.state == State.SUCCEEDED, result.reason
