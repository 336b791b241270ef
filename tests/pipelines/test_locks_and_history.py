"""Locks (DynamoDB through moto, and files) and history stores."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cutover.adapters.history import DynamoDBHistory, FileHistory
from cutover.adapters.locks import DynamoDBLock, FileLock, LeaseLock
from cutover.ports import LockHeld, LockLost, Record


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["dynamodb", "file"])
def make_lock(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    def make(clock: Clock, lease: float = 30.0) -> LeaseLock:
        if request.param == "dynamodb":
            client = request.getfixturevalue("dynamodb")
            return DynamoDBLock(client, "locks", "prod", lease_seconds=lease, clock=clock)
        return FileLock(tmp_path / "prod.lock", lease_seconds=lease, clock=clock)

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


def test_the_lease_is_renewed_in_the_background_and_loss_is_reported(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "l.lock", lease_seconds=0.3)
    lock.acquire("me", "release")
    first = lock.holder()
    time.sleep(0.35)
    renewed = lock.holder()
    assert first and renewed and renewed["expires_at"] > first["expires_at"]  # renewed while running
    FileLock(tmp_path / "l.lock").acquire("other", "rollback", force=True)
    time.sleep(0.3)
    with pytest.raises(LockLost):
        lock.ensure_held()
    lock.release()


def record(n: int, outcome: str = "running") -> Record:
    return Record(
        id=f"r{n}",
        operation="release",
        actor="ci",
        env="prod",
        started_at=1000.0 + n,
        from_traffic={"blue": 100, "green": 0},
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


def test_a_stuck_operation_stops_renewing_its_lease(tmp_path: Path) -> None:
    """No heartbeat (ensure_held) for `stuck_after` seconds: the renewer lets the lease run out."""
    lock = FileLock(tmp_path / "prod.lock", lease_seconds=0.3, stuck_after=0.5)
    lock.acquire("ci@run-1", "release")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (lock.holder() or {}).get("expired"):
            time.sleep(0.05)
        assert (lock.holder() or {}).get("expired") is True
        with pytest.raises(LockLost, match="no progress"):
            lock.ensure_held()
        FileLock(tmp_path / "prod.lock").acquire("oncall@laptop", "rollback")  # on-call gets in
    finally:
        lock.release()


def test_an_operation_that_makes_progress_keeps_its_lease(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "prod.lock", lease_seconds=0.3, stuck_after=0.5)
    lock.acquire("ci@run-1", "release")
    try:
        for _ in range(15):  # 1.5 s of steps, each a heartbeat
            lock.ensure_held()
            time.sleep(0.1)
        assert (lock.holder() or {}).get("expired") is False
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
