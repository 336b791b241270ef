"""The release state machine: release, shift and rollback, and every way they can end.

Read this file top to bottom to know what `cutover` does. The states and the transitions
between them are listed in STATE_CHART; each operation walks them through `_enter`, which
refuses any transition the chart does not list. The adapters (router, deployer, lock,
history, health) are injected, so the same code runs against Route53 and Pulumi in the
cloud, Envoy and local processes on a laptop, and fakes in the property tests.

Guarantees, whatever fails:
- traffic ends either where the operation was going, or exactly where it started
  (restored in one atomic change, with compare-and-swap so a concurrent writer is never
  overwritten);
- no weight is ever moved onto a color that has not just passed its health gate;
- the lock is released and the history has the operation with its outcome.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cutover.model import BadInput, Color, Traffic, other
from cutover.ports import (
    Clock,
    ConcurrentChange,
    Deployer,
    Health,
    History,
    Lock,
    LockHeld,
    LockLost,
    Record,
    TrafficRouter,
)


class State(StrEnum):
    LOCKING = "locking"
    READING = "reading traffic"
    CHECKING_ACTIVE = "checking the active color"
    CHECKING_TARGET = "checking the target color"
    DEPLOYING = "deploying"
    WAITING_READY = "waiting for readiness"
    SMOKE_TESTING = "smoke testing"
    SHIFTING = "shifting traffic"
    BAKING = "baking"
    VERIFYING = "verifying"
    RESTORING = "restoring traffic"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    LOCKED = "locked"


S = State
# Every transition an operation may take. Anything else is a bug, and raises.
# FAILED is reachable from every state that has not ended: any adapter may fail anywhere.
STATE_CHART: dict[State, frozenset[State]] = {
    S.LOCKING: frozenset({S.READING, S.LOCKED, S.FAILED}),
    S.READING: frozenset({S.CHECKING_ACTIVE, S.CHECKING_TARGET, S.REFUSED, S.FAILED}),
    S.CHECKING_ACTIVE: frozenset({S.DEPLOYING, S.REFUSED, S.FAILED}),
    S.CHECKING_TARGET: frozenset({S.SHIFTING, S.REFUSED, S.FAILED}),
    S.DEPLOYING: frozenset({S.WAITING_READY, S.FAILED}),
    S.WAITING_READY: frozenset({S.SMOKE_TESTING, S.FAILED}),
    S.SMOKE_TESTING: frozenset({S.SHIFTING, S.FAILED}),
    S.SHIFTING: frozenset({S.SHIFTING, S.BAKING, S.VERIFYING, S.SUCCEEDED, S.RESTORING, S.FAILED}),
    S.BAKING: frozenset({S.SHIFTING, S.RESTORING, S.FAILED}),
    S.VERIFYING: frozenset({S.SUCCEEDED, S.RESTORING, S.FAILED}),
    S.RESTORING: frozenset({S.FAILED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.REFUSED: frozenset(),
    S.LOCKED: frozenset(),
}

EXIT_CODES = {S.SUCCEEDED: 0, S.FAILED: 1, S.REFUSED: 2, S.LOCKED: 3}


@dataclass(frozen=True)
class Gates:
    """How long and how hard a color is checked before and while it takes traffic."""

    ready_successes: int = 3  # readiness passes in a row before any traffic
    ready_interval: float = 2.0
    ready_timeout: float = 300.0
    bake_seconds: float = 60.0  # after each partial step, while gating on health
    health_interval: float = 2.0
    sync_timeout: float = 300.0


class StepFailed(Exception):
    """A gate or an adapter failed; the operation restores traffic and exits 1."""


class Refused(Exception):
    """The operation will not start (exit 2); nothing was changed."""


@dataclass
class Result:
    operation: str
    state: State
    reason: str
    before: Traffic | None
    after: Traffic | None
    seconds: float
    record_id: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.state]

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "outcome": self.state.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "before": self.before.as_dict() if self.before else None,
            "after": self.after.as_dict() if self.after else None,
            "seconds": round(self.seconds, 3),
            "record_id": self.record_id,
            "steps": self.steps,
        }


class Reporter:
    """Receives progress. The CLI shows it with rich; tests record it."""

    def state(self, state: State, detail: str = "") -> None:
        """The machine entered `state`."""

    def note(self, message: str) -> None:
        """A line of progress within a state."""


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def default_actor() -> str:
    """Who is acting: the CI run if there is one, else user@host."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return f"github:{os.environ.get('GITHUB_ACTOR', '?')}@{os.environ.get('GITHUB_RUN_ID', '?')}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class ReleaseMachine:
    """Runs one operation against one environment's adapters."""

    def __init__(
        self,
        env: str,
        router: TrafficRouter,
        deployer: Deployer,
        lock: Lock,
        history: History,
        health: Health,
        gates: Gates = Gates(),
        *,
        reporter: Reporter | None = None,
        clock: Clock | None = None,
        actor: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.env = env
        self.router = router
        self.deployer = deployer
        self.lock = lock
        self.history = history
        self.health = health
        self.gates = gates
        self.reporter = reporter or Reporter()
        self.clock = clock or SystemClock()
        self.actor = actor or default_actor()
        self._wall = wall_clock
        self._state = S.LOCKING
        self._steps: list[dict[str, Any]] = []
        self._last_written: Traffic | None = None  # the state our last change produced
        self._pending: Traffic | None = None  # a change sent whose outcome is unknown

    # ------------------------------------------------------------------ operations

    def release(
        self, image: str, steps: tuple[int, ...], *, bake: float | None = None, resume: bool = False
    ) -> Result:
        """Deploy `image` to the idle color, shift traffic to it by `steps`, promote."""
        if not image.strip():
            raise BadInput("--image must not be empty")
        bake_seconds = self.gates.bake_seconds if bake is None else bake

        def run(record: Record, before: Traffic) -> Traffic:
            target = self._release_target(before, resume)
            old = other(target)
            record.to_color, record.image = target, image
            self.history.write(record)
            self._enter(S.CHECKING_ACTIVE, f"{old} must be healthy so a rollback has somewhere to go")
            self._require_healthy(old, "the active color")
            self._enter(S.DEPLOYING, f"{image} to {target}")
            try:
                self.deployer.deploy(target, image, self.reporter.note)
            except Exception as exc:
                raise StepFailed(f"deploying {image} to {target} failed: {exc}") from exc
            self._enter(
                S.WAITING_READY, f"{target} must pass readiness {self.gates.ready_successes} times in a row"
            )
            self._wait_ready(target)
            self._enter(S.SMOKE_TESTING, self.health.endpoint(target))
            passed, why = self.health.smoke(target)
            if not passed:
                raise StepFailed(f"smoke checks failed on {target}: {why}")
            current = before
            for weight in steps:
                if weight <= current.weight(target):
                    continue  # resuming: this step was already taken
                current = self._shift(current, target, weight)
                if weight < 100 and bake_seconds > 0:
                    self._enter(S.BAKING, f"{bake_seconds:g}s at {target} {weight}%")
                    self._bake(target, bake_seconds)
            return current

        return self._operate("release", run)

    def shift(self, color: Color, weight: int) -> Result:
        """One manual step: `color` gets `weight`, with the same gates as a release."""
        Traffic.with_weight(color, weight)  # validates the weight before anything runs

        def run(record: Record, before: Traffic) -> Traffic:
            record.to_color = color
            self._enter(S.CHECKING_TARGET, f"{color} before it takes {weight}%")
            if weight > before.weight(color):
                self._require_healthy(color, "the color that would take more traffic")
            current = self._shift(before, color, weight)
            self._enter(S.VERIFYING, f"{color} healthy at {weight}%")
            if weight > 0:
                passed, why = self.health.ready(color)
                if not passed:
                    raise StepFailed(f"{color} failed its health check after the shift: {why}")
            return current

        return self._operate("shift", run)

    def rollback(self, *, force: bool = False, break_lock: bool = False) -> Result:
        """All traffic back to the previous color, in one atomic change."""

        def run(record: Record, before: Traffic) -> Traffic:
            target = self._rollback_target(before)
            record.to_color = target
            self._enter(S.CHECKING_TARGET, f"{target} must be healthy to take all traffic")
            passed, why = self.health.ready(target)
            if not passed:
                if not force:
                    raise Refused(
                        f"{target} is not healthy ({why}); rolling back onto it would fail: use --force to do it anyway"
                    )
                self.reporter.note(f"{target} is not healthy ({why}); going ahead: --force")
                record.details["forced"] = True
            after = self._shift(before, target, 100)
            self._enter(S.VERIFYING, f"traffic all on {target}")
            live = self.router.read()
            if not live.same_weights(Traffic.all_on(target)):
                raise StepFailed(f"read back {live} after the rollback, expected all on {target}")
            return after

        return self._operate("rollback", run, break_lock=break_lock)

    # ------------------------------------------------------------------ the frame

    def _operate(
        self, operation: str, run: Callable[[Record, Traffic], Traffic], *, break_lock: bool = False
    ) -> Result:
        started = self.clock.now()
        record = Record(
            id=uuid.uuid4().hex[:12],
            operation=operation,
            actor=self.actor,
            env=self.env,
            started_at=self._wall(),
            from_traffic={},
        )
        self._state, self._steps, self._last_written, self._pending = S.LOCKING, [], None, None
        self.reporter.state(S.LOCKING, self.env)
        holder_before = self.lock.holder() if break_lock else None
        try:
            self.lock.acquire(self.actor, operation, force=break_lock)
        except LockHeld as held:
            self._enter(S.LOCKED, str(held))
            return Result(
                operation, S.LOCKED, f"another operation holds the lock: {held}", None, None, 0.0, record.id
            )
        if holder_before:
            record.details["lock_broken"] = holder_before
        before: Traffic | None = None
        current: Traffic | None = None
        try:
            self._enter(S.READING)
            try:
                before = current = self.router.read()
            except BadInput:
                raise
            except Exception as exc:
                raise StepFailed(f"could not read traffic: {exc}") from exc
            record.from_traffic = before.as_dict()
            self.history.write(record)
            self.reporter.note(f"traffic now: {before}")
            current = run(record, before)
            self._enter(S.SUCCEEDED)
            reason = ""
        except Refused as refused:
            self._enter(S.REFUSED, str(refused))
            reason = str(refused)
        except BadInput as bad:
            self._enter(S.REFUSED, str(bad))
            reason = str(bad)
        except (StepFailed, LockLost, ConcurrentChange) as failure:
            reason = str(failure) or type(failure).__name__
            current = self._restore(before, reason)
        except Exception as crash:  # an adapter raised something unforeseen: still restore
            reason = f"{type(crash).__name__}: {crash}"
            current = self._restore(before, reason)
        finally:
            self.lock.release()
        seconds = self.clock.now() - started
        record.outcome = self._state.value
        record.reason = reason
        record.to_traffic = current.as_dict() if current else None
        record.finished_at = self._wall()
        record.seconds = round(seconds, 3)
        record.details["steps"] = self._steps
        if before is not None or self._state != S.REFUSED:
            self.history.write(record)
        return Result(operation, self._state, reason, before, current, seconds, record.id, self._steps)

    def _enter(self, state: State, detail: str = "") -> None:
        if state not in STATE_CHART[self._state]:
            raise AssertionError(f"transition {self._state} -> {state} is not in the state chart")
        self._state = state
        self.reporter.state(state, detail)

    # ------------------------------------------------------------------ steps

    def _release_target(self, before: Traffic, resume: bool) -> Color:
        if before.active is not None:
            return other(before.active)
        if not resume:
            raise Refused(
                f"traffic is split ({before}): finish the release with `release --resume`, or `rollback`"
            )
        unfinished = next(
            (r for r in self.history.recent(50) if r.operation == "release" and r.to_color), None
        )
        if unfinished is None or unfinished.to_color not in ("blue", "green"):
            raise Refused(
                f"traffic is split ({before}) and no release in the history says which color it was going to"
            )
        target: Color = "blue" if unfinished.to_color == "blue" else "green"
        self.reporter.note(f"resuming release {unfinished.id} towards {target}")
        return target

    def _rollback_target(self, before: Traffic) -> Color:
        if before.active is not None:
            return other(before.active)
        for record in self.history.recent(50):
            previous = (
                Traffic(record.from_traffic["blue"], record.from_traffic["green"])
                if record.from_traffic
                else None
            )
            if previous is not None and previous.active is not None:
                return previous.active
        raise Refused(
            f"traffic is split ({before}) and the history does not say where it came from: use `shift`"
        )

    def _require_healthy(self, color: Color, role: str) -> None:
        passed, why = self.health.ready(color)
        if not passed:
            raise Refused(f"{role} {color} is not healthy: {why}")

    def _wait_ready(self, color: Color) -> None:
        deadline = self.clock.now() + self.gates.ready_timeout
        in_a_row, last = 0, "no probe yet"
        while in_a_row < self.gates.ready_successes:
            if self.clock.now() > deadline:
                raise StepFailed(
                    f"{color} did not become ready within {self.gates.ready_timeout:g}s ({last})"
                )
            passed, last = self.health.ready(color)
            in_a_row = in_a_row + 1 if passed else 0
            self.reporter.note(
                f"{color} readiness {'ok' if passed else 'failed: ' + last} ({in_a_row}/{self.gates.ready_successes})"
            )
            if in_a_row < self.gates.ready_successes:
                self.clock.sleep(self.gates.ready_interval)

    def _shift(self, current: Traffic, color: Color, weight: int) -> Traffic:
        """One atomic change to `color` at `weight`, gated on health when it adds traffic."""
        self.lock.ensure_held()
        target = Traffic.with_weight(color, weight)
        if weight > current.weight(color):
            passed, why = self.health.ready(color)
            if not passed:
                raise StepFailed(f"{color} failed its gate before taking {weight}%: {why}")
        self._enter(S.SHIFTING, f"{current} -> {target}")
        changed_at = self.clock.now()
        self._pending = target
        try:
            applied = self.router.set(target, expected=current)
        except ConcurrentChange:
            raise
        except Exception as exc:
            raise StepFailed(f"changing traffic to {target} failed: {exc}") from exc
        self._pending, self._last_written = None, applied
        try:
            synced = self.router.wait_in_sync(self.gates.sync_timeout)
        except Exception as exc:
            raise StepFailed(f"{target} did not get in sync: {exc}") from exc
        self._steps.append(
            {"to": applied.as_dict(), "sync_seconds": round(synced, 3), "at": round(changed_at, 3)}
        )
        self.reporter.note(f"{target} in sync after {synced:.2f}s")
        return applied

    def _bake(self, color: Color, seconds: float) -> None:
        end = self.clock.now() + seconds
        while True:
            self.lock.ensure_held()
            passed, why = self.health.ready(color)
            if not passed:
                raise StepFailed(f"{color} failed its health gate while baking: {why}")
            left = end - self.clock.now()
            if left <= 0:
                return
            self.clock.sleep(min(self.gates.health_interval, left))

    def _restore(self, before: Traffic | None, reason: str) -> Traffic | None:
        """Put the weights back exactly as they were, in one change; never overwrite others."""
        self.reporter.note(f"failed: {reason}")
        if before is None or (self._last_written is None and self._pending is None):
            self._enter(S.FAILED, reason)  # no weight was touched
            return before
        self._enter(S.RESTORING, str(before))
        for attempt in range(3):
            try:
                live = self.router.read()
                if live.same_weights(before):
                    break
                if not self._is_ours(live, before):
                    raise ConcurrentChange(
                        f"traffic was changed by someone else ({live}); not overwriting it"
                    )
                self.router.set(Traffic(before.blue, before.green), expected=live)
                self.router.wait_in_sync(self.gates.sync_timeout)
                self.reporter.note(f"restored {before}")
                break
            except ConcurrentChange as exc:
                self._enter(S.FAILED, f"{reason}; {exc}")
                return self._safe_read()
            except Exception as exc:
                if attempt == 2:
                    self._enter(S.FAILED, f"{reason}; restoring failed too ({exc}): run `cutover rollback`")
                    return self._safe_read()
                self.clock.sleep(1.0 * (attempt + 1))
        self._enter(S.FAILED, reason)
        return self._safe_read()

    def _is_ours(self, live: Traffic, before: Traffic) -> bool:
        """Is the live state one this operation produced (or may have, if a call failed late)?"""
        known = self._last_written or before
        if live.generation == known.generation:
            return True
        return (
            self._pending is not None
            and live.same_weights(self._pending)
            and live.generation == known.generation + 1
        )

    def _safe_read(self) -> Traffic | None:
        try:
            return self.router.read()
        except Exception:
            return None
