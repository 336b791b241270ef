"""In-memory adapters with injectable faults, for the state machine's property tests.

Only the edges are fake (the router, the deployer, health answers, the lock backend and
time); the machine under test is the real one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cutover.model import Color, Traffic
from cutover.ports import ConcurrentChange, LockHeld, LockLost, Record
from cutover.release_state import ReleaseState, StateConflict


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class Boom(RuntimeError):
    pass


@dataclass
class FakeRouter:
    traffic: Traffic
    fail_set_at: int | None = None  # the n-th set (1-based) raises
    fail_after_apply: bool = False  # ... after applying the change (a late failure)
    sets: list[tuple[Traffic, Traffic]] = field(default_factory=list)
    on_set: Callable[[Traffic], None] = lambda _t: None  # before a change applies
    after_set: Callable[[], None] = lambda: None  # after it applied (e.g. a hand edit)
    race: Callable[[Traffic], None] = lambda _t: None  # another writer, just before ours lands

    def read(self) -> Traffic:
        return self.traffic

    def set(self, target: Traffic, expected: Traffic) -> Traffic:
        number = len(self.sets) + 1
        self.sets.append((target, expected))
        self.race(target)
        if self.traffic.generation != expected.generation or not self.traffic.same_weights(expected):
            raise ConcurrentChange(f"live {self.traffic} != expected {expected}")
        if self.fail_set_at == number and not self.fail_after_apply:
            raise Boom("route53 unavailable")
        self.on_set(target)
        self.traffic = Traffic(target.blue, target.green, self.traffic.generation + 1)
        applied = self.traffic
        self.after_set()
        if self.fail_set_at == number:
            raise Boom("connection reset after the change was applied")
        return applied

    def wait_in_sync(self, timeout: float) -> float:
        return 0.5


@dataclass
class FakeDeployer:
    fail: bool = False
    images: dict[str, str | None] = field(default_factory=lambda: {"blue": "v1", "green": None})

    def deploy(self, color: Color, image: str, progress: Callable[[str], None]) -> None:
        if self.fail:
            raise Boom("pulumi up failed")
        self.images[color] = image

    def current_image(self, color: Color) -> str | None:
        return self.images[color]


class ScriptedHealth:
    """Readiness answers per color from an iterator (True after it runs out); every answer
    is logged so a test can tell what the machine knew when it moved traffic."""

    def __init__(self, answers: dict[str, Iterator[bool]], smoke_ok: bool = True) -> None:
        self.answers = answers
        self.smoke_ok = smoke_ok
        self.log: list[tuple[str, bool]] = []

    def ready(self, color: Color) -> tuple[bool, str]:
        passed = next(self.answers.get(color, iter(())), True)
        self.log.append((color, passed))
        return passed, "ready" if passed else "503 (scripted)"

    def smoke(self, color: Color) -> tuple[bool, str]:
        return self.smoke_ok, "ok" if self.smoke_ok else "scripted smoke failure"

    def endpoint(self, color: Color) -> str:
        return f"http://{color}.test"

    def last(self, color: str) -> bool | None:
        answers = [passed for c, passed in self.log if c == color]
        return answers[-1] if answers else None


class FakeLock:
    def __init__(self, lose_after: int | None = None) -> None:
        self.held_by: str | None = None
        self.checks = 0
        self.lose_after = lose_after

    def acquire(self, owner: str, operation: str, *, force: bool = False) -> None:
        if self.held_by is not None and not force:
            raise LockHeld({"owner": self.held_by, "operation": "?"})
        self.held_by = owner

    def ensure_held(self, *, fresh: bool = False) -> None:
        self.checks += 1
        if self.lose_after is not None and self.checks > self.lose_after:
            raise LockLost("lease taken over (scripted)")

    def release(self) -> None:
        self.held_by = None

    def holder(self) -> dict[str, Any] | None:
        return {"owner": self.held_by} if self.held_by else None


class MemoryHistory:
    def __init__(self) -> None:
        self.records: dict[str, Record] = {}

    def write(self, record: Record) -> None:
        self.records[record.id] = Record(**{**record.__dict__, "details": dict(record.details)})

    def recent(self, limit: int = 20) -> list[Record]:
        return sorted(self.records.values(), key=lambda r: r.started_at, reverse=True)[:limit]


class MemoryStateStore:
    """The release state with the same compare-and-swap as the real stores."""

    def __init__(self, state: ReleaseState | None = None) -> None:
        self.state = state or ReleaseState()
        self.writes = 0

    def load(self) -> ReleaseState:
        return self.state

    def save(self, state: ReleaseState) -> ReleaseState:
        if state.version != self.state.version:
            raise StateConflict(f"at version {self.state.version}, not {state.version}")
        self.state = dataclasses.replace(state, version=state.version + 1)
        self.writes += 1
        return self.state
