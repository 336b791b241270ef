"""Locks (DynamoDB through moto, and files) and history stores."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cutover.adapters.history import DynamoDBHistory, FileHistory
from cutover.adapters.locks import DynamoDBLock, FileLock, LeaseLock
from cutover.model import Traffic
from cutover.ports import LockHeld, LockLost, Record


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["dynamodb", "file"])
def make_lock(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    def make(clock: Clock, lease: float = 30.0, **more: Any) -> LeaseLock:
        if request.param == "dynamodb":
            client = request.getfixturevalue("dynamodb")
            return DynamoDBLock(client, "locks", "prod", lease_seconds=lease, clock=clock, **more)
        return FileLock(tmp_path / "prod.lock", lease_seconds=lease, clock=clock, **more)

    return make


def test_one_holder_at_a_time_and_release_frees_it(make_lock: Any) -> None:
    clock = Clock()
    first, second = make_lock(clock), make_lock(clock)
    first.acquire("ci@run-1", "release")
    with pytest.raises(LockHeld) as held:
        second.acquire("oncall@laptop", "rollback")
    assert held.value.holder["owner"] == "ci@run-1" and held.value.holder["operation"] == "release"
    first.ensure_held()
    first.release()
    assert second.holder() is None
    second.acquire("oncall@laptop", "rollback")
    second.release()


def test_an_expired_lease_is_taken_over_and_the_old_holder_notices(make_lock: Any) -> None:
    clock = Clock()
    stuck, rescuer = make_lock(clock, lease=30), make_lock(clock, lease=30)
    stuck.acquire("ci@run-1", "release")
    stuck._stop.set()  # a dead process renews nothing
    clock.now += 31
    assert rescuer.holder()["expired"] is True
    rescuer.acquire("ci@run-2", "release")
    assert stuck._renew(stuck._token, clock.now + 30) is False
    rescuer.release()


def test_force_breaks_a_live_lease(make_lock: Any) -> None:
    clock = Clock()
    stuck, oncall = make_lock(clock), make_lock(clock)
    stuck.acquire("ci@run-1", "release")
    oncall.acquire("oncall", "rollback", force=True)
    assert oncall.holder()["owner"] == "oncall"
    stuck.release()  # does not delete someone else's lease
    assert oncall.holder()["owner"] == "oncall"
    oncall.release()


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for an observable condition (never for a fixed time); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def lost(lock: LeaseLock) -> bool:
    try:
        lock.ensure_held()
    except LockLost:
        return True
    return False


def test_the_lease_is_renewed_in_the_background_and_loss_is_reported(tmp_path: Path) -> None:
    """The renewer thread itself: the test waits for what it does, not for how long it takes."""
    lock = FileLock(tmp_path / "l.lock", lease_seconds=0.3)
    lock.acquire("me", "release")
    first = lock.holder()
    assert first is not None
    until(lambda: (lock.holder() or {}).get("expires_at", 0) > first["expires_at"])  # renewed
    FileLock(tmp_path / "l.lock").acquire("other", "rollback", force=True)
    until(lambda: lost(lock))  # its next renewal finds the lease taken over
    with pytest.raises(LockLost, match="taken over"):
        lock.ensure_held()
    lock.release()


def record(n: int, outcome: str = "running") -> Record:
    return Record(
        id=f"r{n}",
        operation="release",
        actor="ci",
        env="prod",
        started_at=1000.0 + n,
        from_traffic=Traffic(100, 0, 1),
        outcome=outcome,
    )


@pytest.fixture(params=["dynamodb", "file"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "dynamodb":
        return DynamoDBHistory(request.getfixturevalue("dynamodb"), "history", "prod")
    return FileHistory(tmp_path / "history.jsonl")


def test_history_keeps_the_latest_version_of_each_record_newest_first(history: Any) -> None:
    for n in range(3):
        history.write(record(n))
    history.write(record(1, outcome="succeeded"))
    recent = history.recent(10)
    assert [r.id for r in recent] == ["r2", "r1", "r0"]
    assert [r.outcome for r in recent] == ["running", "succeeded", "running"]
    assert [r.id for r in history.recent(1)] == ["r2"]


# Records exactly as cutover has written them before the record was typed (sorted keys, one line):
# a release that finished, and a release refused before it read the traffic.
STORED = [
    '{"actor": "ci@run-7", "details": {"steps": [{"to": {"blue": 0, "generation": 3, "green": 100}}]}, '
    '"env": "prod", "finished_at": 1010.5, "from_traffic": {"blue": 100, "generation": 2, "green": 0}, '
    '"id": "r9", "image": "v2", "operation": "release", "outcome": "succeeded", "reason": "", '
    '"seconds": 10.5, "started_at": 1000.0, "to_color": "green", '
    '"to_traffic": {"blue": 0, "generation": 3, "green": 100}}',
    '{"actor": "oncall", "details": {}, "env": "prod", "finished_at": null, "from_traffic": {}, '
    '"id": "r8", "image": null, "operation": "rollback", "outcome": "locked", "reason": "held", '
    '"seconds": null, "started_at": 999.0, "to_color": null, "to_traffic": null}',
]


def test_records_in_the_stored_format_read_typed_and_write_back_unchanged(history: Any) -> None:
    if isinstance(history, FileHistory):
        history.path.write_text("\n".join(STORED) + "\n")
    else:
        for line in STORED:
            started = json.loads(line)["started_at"]
            history.client.put_item(
                TableName="history",
                Item={
                    "env": {"S": "prod"},
                    "sort_key": {"S": f"{started:017.6f}#{json.loads(line)['id']}"},
                    "record": {"S": line},
                },
            )
    finished, refused = history.recent(10)
    assert finished.from_traffic == Traffic(100, 0, 2) and finished.to_traffic == Traffic(0, 100, 3)
    assert finished.to_color == "green" and finished.to_traffic.active == "green"
    assert refused.from_traffic is None and refused.to_traffic is None and refused.to_color is None
    assert [json.dumps(r.to_dict(), sort_keys=True) for r in (finished, refused)] == STORED
    history.write(finished)  # written again by this version: the same line
    (again, _) = history.recent(10)
    assert again == finished
    if isinstance(history, FileHistory):
        assert history.path.read_text().splitlines()[-1] == STORED[0]
    else:
        items = history.client.scan(TableName="history")["Items"]
        assert sorted(item["record"]["S"] for item in items) == sorted(STORED)


def test_a_stuck_operation_stops_renewing_its_lease(make_lock: Any) -> None:
    """No heartbeat (ensure_held) for `stuck_after` seconds: the renewer lets the lease run out."""
    wall, silence = Clock(), Clock()
    lock = make_lock(wall, lease=30, stuck_after=60, monotonic=silence)
    lock.acquire("ci@run-1", "release")
    try:
        silence.now += 59
        assert lock.renew_once() is True  # quiet, not yet stuck: renewed
        silence.now += 2
        wall.now += 31
        assert lock.renew_once() is False  # stuck: left to run out
        assert (lock.holder() or {}).get("expired") is True
        with pytest.raises(LockLost, match="no progress"):
            lock.ensure_held()
        make_lock(wall).acquire("oncall@laptop", "rollback")  # on-call gets in
    finally:
        lock.release()


def test_an_operation_that_makes_progress_keeps_its_lease(make_lock: Any) -> None:
    wall, silence = Clock(), Clock()
    lock = make_lock(wall, lease=30, stuck_after=60, monotonic=silence)
    lock.acquire("ci@run-1", "release")
    try:
        for _ in range(15):  # 150 s of steps, each a heartbeat, the renewer every 10 s
            silence.now += 10
            wall.now += 10
            lock.ensure_held()
            assert lock.renew_once() is True
        assert (lock.holder() or {}).get("expired") is False
        with pytest.raises(LockHeld):
            make_lock(wall).acquire("oncall@laptop", "rollback")
    finally:
        lock.release()


def test_a_missing_table_is_refused_naming_the_key(dynamodb: Any) -> None:
    from cutover.model import BadInput

    lock = DynamoDBLock(dynamodb, "no-such-table", "prod")
    with pytest.raises(BadInput, match=r"`lock\.table`"):
        lock.acquire("ci@run-1", "release")
    with pytest.raises(BadInput, match=r"`history\.table`"):
        DynamoDBHistory(dynamodb, "no-such-table", "prod").recent()


def test_a_broken_lock_stops_its_old_holder_at_the_next_fresh_check(make_lock: Any) -> None:
    clock = Clock()
    old, on_call = make_lock(clock), make_lock(clock)
    old.acquire("ci@run-1", "release")
    try:
        on_call.acquire("oncall@laptop", "rollback", force=True)  # --break-lock
        old._confirmed = 0.0  # its last fresh look was more than a second ago
        with pytest.raises(LockLost, match="taken over"):
            old.ensure_held(fresh=True)  # before its next change: it stops here
    finally:
        on_call.release()
        old.release()


def test_a_lease_without_an_expiry_is_free_to_take(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="locks", Item={"lock_id": {"S": "prod"}, "owner": {"S": "a hand edit"}})
    lock = DynamoDBLock(dynamodb, "locks", "prod")
    assert (lock.holder() or {})["expired"] is True
    lock.acquire("oncall@laptop", "rollback")
    lock.release()


def test_two_services_of_one_stack_share_the_lock_table_but_not_the_lock(dynamodb: Any) -> None:
    """Each service's cutover environment is its lock key (issue 16): ledger (`dev`) and
    greeter (`dev-greeter`) release at the same time; two operators on one service do not."""
    clock = Clock()
    ledger = DynamoDBLock(dynamodb, "locks", "dev", clock=clock)
    greeter = DynamoDBLock(dynamodb, "locks", "dev-greeter", clock=clock)
    ledger.acquire("ci@ledger", "release")
    greeter.acquire("ci@greeter", "release")  # not refused: another service's lock
    with pytest.raises(LockHeld) as held:
        DynamoDBLock(dynamodb, "locks", "dev-greeter", clock=clock).acquire("oncall@laptop", "rollback")
    assert held.value.holder["owner"] == "ci@greeter"
    greeter.release()
    assert ledger.holder() is not None and greeter.holder() is None
    ledger.release()
