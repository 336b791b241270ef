"""The durable release state: its stores' compare-and-swap and its rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.adapters.state_store import DynamoDBStateStore, FileStateStore
from cutover.model import Traffic
from cutover.release_state import (
    Build,
    ReleaseState,
    StateConflict,
    adopt,
    begin_release,
    finish_release,
    rollback_target,
    rolled_back,
)


@pytest.fixture(params=["dynamodb", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "dynamodb":
        return DynamoDBStateStore(request.getfixturevalue("dynamodb"), "locks", "prod")
    return FileStateStore(tmp_path / "release-state.json")


def test_a_store_writes_with_compare_and_swap(store: Any) -> None:
    empty = store.load()
    assert empty == ReleaseState()
    first = store.save(adopt(empty, Traffic.all_on("blue"), {"blue": "v1", "green": None}, now=1))
    assert first.version == 1 and store.load() == first
    with pytest.raises(StateConflict):
        store.save(empty)  # a writer that read version 0 does not overwrite version 1
    second = store.save(begin_release(first, "r1", "v2", "green", Traffic.all_on("blue"), now=2))
    assert store.load() == second and second.version == 2
    with pytest.raises(StateConflict):
        store.save(first)


def test_the_rules_from_adoption_to_a_second_rollback() -> None:
    blue = Traffic.all_on("blue")
    state = adopt(ReleaseState(), blue, {"blue": "v1", "green": "v0"}, now=0)
    assert rollback_target(state) == Build("blue", "v1")  # the live build, not the idle one
    assert not state.build("green").verified
    state = begin_release(state, "r1", "v2", "green", blue, now=1)
    assert state.release is not None and not state.build("green").verified
    state = finish_release(state, "r1", "green", now=2)
    assert state.build("green").verified and state.release is None
    assert rollback_target(state) == Build("blue", "v1")
    state = rolled_back(state, Build("blue", "v1"), "rb1", "oncall", now=3)
    assert not state.build("green").verified and rollback_target(state) == Build("blue", "v1")
    # the next release replaces green; blue, live and verified, stays the rollback target
    state = begin_release(state, "r2", "v3", "green", blue, now=4)
    assert rollback_target(state) == Build("blue", "v1")


def test_a_known_good_overwritten_by_a_deploy_is_no_rollback_target() -> None:
    split = Traffic(50, 50)
    state = adopt(ReleaseState(), Traffic.all_on("blue"), {"blue": "v1", "green": None}, now=0)
    state = begin_release(state, "r1", "v2", "green", Traffic.all_on("blue"), now=1)
    state = finish_release(state, "r1", "green", now=2)  # last good: blue v1
    state = begin_release(state, "r2", "v3", "blue", split, now=3)  # blue redeployed (resume-like)
    assert rollback_target(state) is None


def test_an_unreadable_state_is_refused_with_the_fix(store: Any, tmp_path: Path) -> None:
    from cutover.model import BadInput

    if isinstance(store, FileStateStore):
        store.path.write_text("{not json")
    else:
        store.client.put_item(
            TableName="locks", Item={**store.key, "version": {"N": "3"}, "state": {"S": '{"colors": 7}'}}
        )
    with pytest.raises(BadInput, match="delete it"):
        store.load()
