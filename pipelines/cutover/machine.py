"""The release state machine: release, shift, rollback and retire, and every way they can end.

Read this file top to bottom to know what `cutover` does. The states and the transitions
between them are listed in STATE_CHART; each operation walks them through `_enter`, which
refuses any transition the chart does not list. The adapters (router, deployer, lock,
history, health, release state) are injected, so the same code runs against Route53 and
Pulumi in the cloud, Envoy and local processes on a laptop, and fakes in the property tests.

Guarantees, whatever fails and whatever signal arrives:
- traffic ends either where the operation was going, or exactly where it started
  (restored in one atomic change, with compare-and-swap); a change made by someone else
  (another generation, or other weights) is never overwritten: that ends UNRESTORED;
- the outcome (and exit code) follows from where traffic ended: 1 and 130/143 only when it
  is back where it started, 4 when it is not;
- no weight is moved onto a color that has not just passed its health gate (except
  `rollback --force`, which skips the target's health check and nothing else);
- a rollback goes to the last known good build (cutover.release_state) and only there;
- the lock is released and the history has the operation with its outcome;
- a color is retired (its instances stopped) only while it has weight 0, once the DNS
  answers that named it have expired and it has had no request for the settling window:
  `retire` waits for that outside the lock, checks it again under the lock, and refuses
  (exit 2, nothing changed) whenever it does not hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cutover import retry
from cutover.cancel import Cancelled, CancelScope
from cutover.model import COLORS, DEFAULT_STEPS, PAUSE, BadInput, Color, Traffic, describe_steps, other
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
    RetiringDeployer,
    TrafficMeter,
    TrafficRouter,
)
from cutover.release_state import (
    ColorBuild,
    ReleaseState,
    ReleaseStateStore,
    StateConflict,
    adopt,
    begin_release,
    deployed,
    end_release,
    finish_release,
    pause,
    resumed_pause,
    rollback_target,
    rolled_back,
)

if TYPE_CHECKING:  # the analysis is built only for a release: not imported on the rollback path
    from cutover.analysis import CanaryAnalysis


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
    PAUSED = "waiting for promote"
    VERIFYING = "verifying"
    SETTLING = "waiting until retiring is safe"  # retire --wait, outside the lock
    RETIRING = "retiring"  # stopping the old color's instances
    RESTORING = "restoring traffic"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # traffic is where the operation found it
    UNRESTORED = "failed, traffic not restored"  # act now
    CANCELLED = "cancelled"  # by SIGINT/SIGTERM; traffic is where the operation found it
    REFUSED = "refused"
    LOCKED = "locked"


S = State
# Every transition an operation may take. Anything else is a bug, and raises.
# FAILED, CANCELLED and UNRESTORED are reachable from every state that has not ended: any
# adapter may fail, and a signal may arrive, anywhere; before this operation moved a weight
# nothing needs restoring, but someone else may have moved one (UNRESTORED: look first).
_ENDS = frozenset({S.FAILED, S.CANCELLED, S.UNRESTORED})
STATE_CHART: dict[State, frozenset[State]] = {
    # retire starts in LOCKING too: not yet safe, it refuses, or (--wait) it settles first
    S.LOCKING: frozenset({S.READING, S.LOCKED, S.REFUSED, S.SETTLING}) | _ENDS,
    S.SETTLING: frozenset({S.LOCKING, S.REFUSED}) | _ENDS,  # then the frame locks again
    S.READING: frozenset({S.CHECKING_ACTIVE, S.CHECKING_TARGET, S.REFUSED}) | _ENDS,
    S.CHECKING_ACTIVE: frozenset({S.DEPLOYING, S.WAITING_READY, S.REFUSED}) | _ENDS,
    S.CHECKING_TARGET: frozenset({S.SHIFTING, S.RETIRING, S.SUCCEEDED, S.REFUSED}) | _ENDS,
    S.RETIRING: frozenset({S.SUCCEEDED}) | _ENDS,
    S.DEPLOYING: frozenset({S.WAITING_READY}) | _ENDS,
    S.WAITING_READY: frozenset({S.SMOKE_TESTING}) | _ENDS,
    S.SMOKE_TESTING: frozenset({S.SHIFTING, S.PAUSED, S.VERIFYING}) | _ENDS,
    S.SHIFTING: frozenset({S.SHIFTING, S.BAKING, S.PAUSED, S.VERIFYING, S.SUCCEEDED, S.RESTORING}) | _ENDS,
    S.BAKING: frozenset({S.SHIFTING, S.PAUSED, S.RESTORING}) | _ENDS,
    S.PAUSED: frozenset({S.SHIFTING, S.RESTORING}) | _ENDS,
    S.VERIFYING: frozenset({S.SUCCEEDED, S.RESTORING}) | _ENDS,
    S.RESTORING: _ENDS,
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.UNRESTORED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REFUSED: frozenset(),
    S.LOCKED: frozenset(),
}

EXIT_CODES = {S.SUCCEEDED: 0, S.FAILED: 1, S.REFUSED: 2, S.LOCKED: 3, S.UNRESTORED: 4, S.CANCELLED: 130}


@dataclass(frozen=True)
class Gates:
    """How long and how hard a color is checked before and while it takes traffic."""

    ready_successes: int = 3  # readiness passes in a row before any traffic
    ready_interval: float = 2.0
    ready_timeout: float = 300.0
    bake_seconds: float = 60.0  # after each partial step, while gating on health
    health_interval: float = 2.0
    sync_timeout: float = 300.0
    pause_timeout: float = 86_400.0  # the longest a `pause` step waits for `cutover promote`
    restore_seconds: float = 60.0  # the most a restore after a failure may take
    cancel_seconds: float = 6.0  # ... after SIGINT/SIGTERM (CI sends SIGTERM 7.5 s after SIGINT)

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not value > 0 and name != "bake_seconds":
                raise BadInput(f"gates.{name} must be more than 0 (got {value})")
        if self.bake_seconds < 0:
            raise BadInput(f"gates.bake_seconds must be 0 or more (got {self.bake_seconds})")


@dataclass(frozen=True)
class RetirePolicy:
    """When retiring the old color is safe (`cutover retire`): both must hold.

    (a) `answer_ttl_seconds` have passed since its weight went to 0: resolvers may keep
        answering with it that long (Route53 alias records: the alias target's TTL, 60 s
        for an ALB; 0 for a proxy that switches at once);
    (b) it has had no request for `settle_seconds` (clients that hold answers longer than
        the TTL show up here), as the traffic meter sees it, `lag_seconds` behind.
    """

    answer_ttl_seconds: float = 60.0
    settle_seconds: float = 30.0
    wait_interval: float = 5.0  # --wait: how often it looks again
    wait_timeout: float = 3600.0  # --wait: the longest it waits before it refuses

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            low = 0 if name in ("answer_ttl_seconds", "settle_seconds") else 1e-9
            if not (math.isfinite(value) and value >= low):
                raise BadInput(f"retire: {name} must be a number of seconds, at least {low:g} (got {value})")


@dataclass(frozen=True)
class RetireVerdict:
    """Whether `color` may be retired at `now` (wall clock), and if not, until when to wait."""

    color: Color
    now: float
    zero_since: float  # the latest time the color may still have had weight
    zero_since_known: bool  # False: history could not tell; counted from this process's first look
    last_request_at: float | None
    policy: RetirePolicy
    lag_seconds: float

    @property
    def safe_at(self) -> float:
        ttl_end = self.zero_since + self.policy.answer_ttl_seconds
        quiet_end = (
            -math.inf if self.last_request_at is None else self.last_request_at + self.policy.settle_seconds
        )
        return max(ttl_end, quiet_end) + self.lag_seconds

    @property
    def safe(self) -> bool:
        return self.now >= self.safe_at

    @property
    def wait_seconds(self) -> int:
        return max(0, math.ceil(self.safe_at - self.now))

    def _rule(self) -> str:
        rule = (
            f"TTL {self.policy.answer_ttl_seconds:g} s since {_hms(self.zero_since)}, "
            f"then {self.policy.settle_seconds:g} s without requests"
        )
        if self.lag_seconds:
            rule += f", plus {self.lag_seconds:g} s the traffic meter may lag"
        return rule

    @property
    def reason(self) -> str:
        if self.last_request_at is None:
            seen = f"{self.color} has had no request since the traffic meter can tell"
        else:
            seen = f"{self.color} answered a request {max(0.0, self.now - self.last_request_at):.0f} s ago"
        if self.safe:
            return f"{seen}; its weight went to 0 at {_hms(self.zero_since)}: safe to retire ({self._rule()})"
        counted = (
            ""
            if self.zero_since_known
            else (
                f"; history has no record of when {self.color}'s weight went to 0, so the TTL counts from "
                f"{_hms(self.zero_since)}, when this command first saw it at 0"
            )
        )
        if self.last_request_at is None or self.last_request_at + self.policy.settle_seconds <= (
            self.zero_since + self.policy.answer_ttl_seconds
        ):
            seen = (
                f"{self.color}'s weight went to 0 {max(0.0, self.now - self.zero_since):.0f} s ago and DNS "
                "answers may still send it requests"
            )
        return f"{seen}; retire is safe in {self.wait_seconds} s at the earliest ({self._rule()}){counted}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "color": self.color,
            "wait_seconds": self.wait_seconds,
            "safe_at": round(self.safe_at, 3),
            "weight_zero_since": round(self.zero_since, 3),
            "weight_zero_since_known": self.zero_since_known,
            "last_request_at": None if self.last_request_at is None else round(self.last_request_at, 3),
            "answer_ttl_seconds": self.policy.answer_ttl_seconds,
            "settle_seconds": self.policy.settle_seconds,
            "meter_lag_seconds": self.lag_seconds,
        }


def weight_zero_since(color: Color, records: list[Record]) -> float | None:
    """From history (newest first): the latest time `color` may still have had weight, or
    None when history cannot tell (no record that read the traffic).

    The operation that moved it to 0 bounds it with its end; if its weight went to 0 outside
    cutover (a hand edit, or an operation whose process died), the first operation after
    that found it at 0 bounds it with its start; if no record shows it with weight, the
    oldest record found it at 0 already."""
    seen_zero_at: float | None = None  # the start of the oldest newer record that found it at 0
    for record in records:
        if record.from_traffic is None:
            continue  # never read the traffic: tells nothing
        after = record.to_traffic
        if not _may_have_had_weight(color, record):
            seen_zero_at = record.started_at
            continue
        if after is not None and after.weight(color) == 0 and record.finished_at is not None:
            return record.finished_at
        return seen_zero_at
    return seen_zero_at


def _may_have_had_weight(color: Color, record: Record) -> bool:
    """Whether `color` may have had weight during `record`: before, after, at any step it took
    (a release or shift that failed or was cancelled ends where it started, but the color had
    weight in between), or, for an operation moving traffic to it, at a moment no step shows
    (a change whose outcome was unknown, a process that died)."""
    seen = [t.weight(color) for t in (record.from_traffic, record.to_traffic) if t is not None]
    for step in record.details.get("steps") or []:
        to = step.get("to") if isinstance(step, dict) else None
        if isinstance(to, dict) and isinstance(to.get(color), int | float):
            seen.append(to[color])
    moving_here = (
        record.to_color == color
        and record.operation in ("release", "shift", "rollback")
        and record.outcome not in (State.REFUSED.value, State.LOCKED.value)
    )
    return moving_here or any(weight > 0 for weight in seen)


def _hms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


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
    signal: int | None = None  # the signal that cancelled the operation
    warnings: list[str] = field(default_factory=list)
    target: str | None = None  # the color (and image) the operation was going to
    extra: dict[str, Any] = field(default_factory=dict)  # operation-specific keys (retire's)

    @property
    def exit_code(self) -> int:
        if self.state == S.CANCELLED and self.signal is not None:
            return 128 + self.signal
        return EXIT_CODES[self.state]

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "outcome": self.state.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "before": self.before.as_dict() if self.before else None,
            "after": self.after.as_dict() if self.after else None,
            "target": self.target,
            "seconds": round(self.seconds, 3),
            "record_id": self.record_id,
            "steps": self.steps,
            "warnings": self.warnings,
            **self.extra,
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
        deployer: Deployer | None,
        lock: Lock,
        history: History,
        health: Health,
        gates: Gates = Gates(),
        *,
        states: ReleaseStateStore,
        analysis: CanaryAnalysis | None = None,
        reporter: Reporter | None = None,
        clock: Clock | None = None,
        actor: str | None = None,
        wall_clock: Callable[[], float] = time.time,
        cancel: CancelScope | None = None,
    ) -> None:
        self.env = env
        self.router = router
        self.deployer = deployer  # None: this operation deploys nothing (shift, rollback)
        self.lock = lock
        self.history = history
        self.health = health
        self.gates = gates
        self.states = states
        self.analysis = analysis  # None: health gates only
        self.reporter = reporter or Reporter()
        self.clock = clock or SystemClock()
        self.actor = actor or default_actor()
        self.cancel = cancel or CancelScope()
        self._wall = wall_clock
        self._state = S.LOCKING
        self.transitions: list[tuple[State, State]] = []
        self._steps: list[dict[str, Any]] = []
        self._steps_analysis: list[dict[str, Any]] = []  # every canary verdict, in order
        self._conclusive = False  # the analysis passed on enough requests at least once
        self._warnings: list[str] = []
        self._release: ReleaseState = ReleaseState()
        self._last_written: Traffic | None = None  # the state our last change produced
        self._pending: Traffic | None = None  # a change sent whose outcome is unknown
        self._pending_base: Traffic | None = None  # ... and the state it was sent against
        self._target: str | None = None

    # ------------------------------------------------------------------ operations

    def release(
        self,
        image: str | None,
        steps: tuple[int, ...] | None = None,
        *,
        bake: float | None = None,
        resume: bool = False,
    ) -> Result:
        """Deploy `image` to the idle color, shift traffic to it by `steps`, promote.

        `resume` finishes the interrupted release recorded in the release state, with its
        own image, color, steps (its `pause` gates included) and bake, and nothing else.
        """
        if not resume and not (image or "").strip():
            raise BadInput("--image must not be empty")

        def run(record: Record, before: Traffic) -> Traffic:
            if not before.written_by_cutover:
                raise Refused(
                    f"the live weights ({before}) were not written by cutover: someone changed them by hand. "
                    "`cutover rollback` puts all traffic on the last known good"
                )
            target, chosen = self._release_target(before, image, resume, record)
            plan_steps, bake_seconds = self._release_steps(steps, bake, resume)
            old = other(target)
            record.to_color, record.image = target, chosen
            self._target = f"{target} ({chosen})"
            self._write_history(record)
            self._enter(S.CHECKING_ACTIVE, f"{old} must be healthy so a rollback has somewhere to go")
            if before.weight(old) > 0:
                self._require_healthy(old, "the active color")
            if not resume:
                self._require_verified_live(before)
                self._save_state(
                    lambda st: begin_release(
                        st, record.id, chosen, target, before, self._wall(), plan_steps, bake_seconds
                    )
                )
            else:
                self._save_state(lambda st: _resumed(st, record.id))
            if before.weight(target) == 0:  # a color that takes traffic is never redeployed
                self._enter(S.DEPLOYING, f"{chosen} to {target}")
                digest = self._deploy(target, chosen)
                if digest:
                    self._save_state(lambda st: deployed(st, target, digest))
            self._enter(
                S.WAITING_READY, f"{target} must pass readiness {self.gates.ready_successes} times in a row"
            )
            self._wait_ready(target)
            self._enter(S.SMOKE_TESTING, self.health.endpoint(target))
            passed, why = self.health.smoke(target)
            if not passed:
                raise StepFailed(f"smoke checks failed on {target}: {why}")
            current = before
            for number, weight in enumerate(plan_steps):
                if weight == PAUSE:
                    if current.weight(target) < plan_steps[number + 1]:  # resuming past it: skip
                        self._await_promote(target, current, record)
                    continue
                if weight <= current.weight(target):
                    continue  # resuming: this step was already taken
                if weight == 100:
                    self._require_verdict(target)
                current = self._shift(current, target, weight)
                if weight < 100 and bake_seconds > 0:
                    self._enter(S.BAKING, f"{bake_seconds:g}s at {target} {weight}%")
                    self._bake(target, bake_seconds)
                elif weight < 100:
                    self._analyse(target)  # no bake: one look between steps all the same
            if current.weight(target) < 100:  # resumed with every step already taken
                self._require_verdict(target)
                current = self._shift(current, target, 100)
            self._enter(S.VERIFYING, f"{target} healthy with all traffic")
            passed, why = self.health.ready(target)
            if not passed:
                raise StepFailed(f"{target} failed its health check with all traffic: {why}")
            self._save_state(lambda st: finish_release(st, record.id, target, self._wall()), critical=False)
            return current

        return self._operate("release", run)

    def _release_steps(
        self, steps: tuple[int, ...] | None, bake: float | None, resume: bool
    ) -> tuple[tuple[int, ...], float]:
        """The steps and bake a release runs: a resume runs the recorded ones."""
        inflight = self._release.release
        if resume and inflight is not None and inflight.steps:
            if steps is not None and steps != inflight.steps:
                raise Refused(
                    f"--resume runs the interrupted release's own steps ({describe_steps(inflight.steps)}): "
                    "drop --strategy"
                )
            steps = inflight.steps
            if bake is None and inflight.bake_seconds is not None:
                bake = inflight.bake_seconds
        chosen = steps or DEFAULT_STEPS
        if self.analysis is not None and not any(0 < s < 100 for s in chosen):
            raise Refused(
                "canary analysis compares the new color with the old one while both take traffic: "
                "use a strategy with a partial step (e.g. canary:10,100), or remove `analysis`"
            )
        return chosen, self.gates.bake_seconds if bake is None else bake

    def _require_verified_live(self, before: Traffic) -> None:
        """A release starts from a verified build: the one it replaces on the idle color may
        be the last known good, and a release from an unverified one would leave nothing."""
        live = before.active
        if live is None:
            return
        build = self._release.build(live)
        if not build.verified:
            raise Refused(
                f"{live} carries all traffic but its build ({build.image or 'unrecorded'}) did not pass its "
                f"gates ({build.note or 'not verified'}): `cutover rollback` to the last known good first"
            )

    def plan(
        self,
        image: str | None,
        steps: tuple[int, ...] | None = None,
        *,
        bake: float | None = None,
        resume: bool = False,
    ) -> dict[str, Any]:
        """What `release` would do, read-only: no lock taken, nothing written
        (`release --dry-run`). Raises Refused, BadInput or LockHeld where the release would
        refuse or be locked out, so the dry run exits as the release would."""
        before = self.router.read()
        self._release = self.states.load()
        if not self._release.version:
            self._release = adopt(self._release, before, {}, self._wall())
        holder = self.lock.holder()
        if holder and not holder.get("expired"):
            raise LockHeld(holder)
        if not before.written_by_cutover:
            raise Refused(f"the live weights ({before}) were not written by cutover: a release would refuse")
        if not resume and not (image or "").strip():
            raise BadInput("--image must not be empty")
        probe = Record(
            id="dry-run", operation="release", actor=self.actor, env=self.env, started_at=0, from_traffic=None
        )
        target, chosen = self._release_target(before, image, resume, probe)
        plan_steps, bake_seconds = self._release_steps(steps, bake, resume)
        if before.weight(other(target)) > 0:
            self._require_healthy(other(target), "the active color")
        if not resume:
            self._require_verified_live(before)
        good = rollback_target(self._release)
        return {
            "operation": "release",
            "dry_run": True,
            "env": self.env,
            "traffic": before.as_dict(),
            "image": chosen,
            "from_color": other(target),
            "to_color": target,
            "deploy": before.weight(target) == 0,
            "steps": describe_steps(plan_steps),
            "bake_seconds": bake_seconds,
            "gates": dataclasses.asdict(self.gates),
            "rollback_to": str(good) if good else None,
            "analysis": dataclasses.asdict(self.analysis.thresholds) if self.analysis else None,
            "resumes": probe.details.get("resumes"),
        }

    def shift(self, color: Color, weight: int) -> Result:
        """One manual step: `color` gets `weight`, with the same gates as a release."""
        target = Traffic.with_weight(color, weight)  # validates the weight before anything runs

        def run(record: Record, before: Traffic) -> Traffic:
            if not before.written_by_cutover:
                raise Refused(
                    f"the live weights ({before}) were not written by cutover: someone changed them by hand. "
                    "`cutover rollback` puts all traffic on the last known good"
                )
            record.to_color = color
            self._target = str(target)
            rising = _rising(before, target)
            self._enter(S.CHECKING_TARGET, f"{', '.join(rising) or 'no color'} must be healthy to take more")
            for up in rising:
                self._require_healthy(up, "the color that would take more traffic")
            current = self._shift(before, color, weight)
            self._enter(S.VERIFYING, f"{', '.join(rising) or 'traffic'} healthy after the shift")
            for up in rising:
                passed, why = self.health.ready(up)
                if not passed:
                    raise StepFailed(f"{up} failed its health check after the shift: {why}")
            return current

        return self._operate("shift", run)

    def rollback(self, *, force: bool = False, break_lock: bool = False) -> Result:
        """All traffic back to the last known good build, in one atomic change.

        Never onto a build that did not pass its gates; when traffic is already there, it
        changes nothing. `force` skips the target's health check (never the choice of target).
        """

        def run(record: Record, before: Traffic) -> Traffic:
            self._enter(S.CHECKING_TARGET, "the last known good")
            good = rollback_target(self._release)
            if good is None:
                raise Refused(_no_known_good(self._release))
            record.to_color, record.image = good.color, good.image
            self._target = str(good)
            if before.active == good.color:
                record.details["nothing_to_do"] = (
                    f"nothing to roll back: all traffic is already on the last known good, {good}"
                )
                if self._release.release is not None:  # a release that never moved traffic: abandoned
                    self._save_state(lambda st: rolled_back(st, good, record.id, self.actor, self._wall()))
                self._enter(S.SUCCEEDED, record.details["nothing_to_do"])
                return before
            passed, why = self.health.ready(good.color)
            if not passed:
                if not force:
                    raise Refused(
                        f"{good} is not healthy ({why}); rolling back onto it would fail: "
                        "use --force to do it anyway"
                    )
                self.reporter.note(f"{good.color} is not healthy ({why}); going ahead: --force")
                record.details["forced"] = True
            try:
                after = self._shift(before, good.color, 100, gated=not force)
            except ConcurrentChange:
                live = self.router.read()
                if not live.same_weights(Traffic.all_on(good.color)):
                    raise
                # another operation (a second on-call) put all traffic there meanwhile
                record.details["nothing_to_do"] = (
                    f"nothing to roll back: another operation put all traffic on {good} meanwhile"
                )
                self._enter(S.SUCCEEDED, record.details["nothing_to_do"])
                return live
            self._enter(S.VERIFYING, f"traffic all on {good}")
            live = self.router.read()
            if not live.same_weights(Traffic.all_on(good.color)):
                raise StepFailed(f"read back {live} after the rollback, expected all on {good.color}")
            self._save_state(
                lambda st: rolled_back(st, good, record.id, self.actor, self._wall()), critical=False
            )
            return after

        return self._operate("rollback", run, break_lock=break_lock)

    HISTORY_LOOKBACK = 200  # records read to find when a color's weight went to 0

    def retire(
        self, meter: TrafficMeter, policy: RetirePolicy, color: Color | None = None, *, wait: bool = False
    ) -> Result:
        """Stop the instances of the old color (weight 0) once that is safe (RetirePolicy).

        Not yet safe: refuses (exit 2) with how long to wait, changing nothing; `wait` looks
        again every `policy.wait_interval` until it is (outside the lock: a rollback is never
        kept waiting), then retires. Under the lock it checks again (someone may have
        shifted meanwhile) before the deployer stops the color. An already retired color is
        "nothing to do". The release state then records the color as running nothing, so a
        rollback never goes to it.
        """
        self._state, self._warnings, self._steps = S.LOCKING, [], []
        self._target = None
        started = self.clock.now()
        first_look: dict[Color, float] = {}  # when this process first saw each color at 0
        verdict: RetireVerdict | None = None
        chosen: Color | None = color
        try:
            if not isinstance(self.deployer, RetiringDeployer):
                raise Refused(
                    f"retiring a color is not supported by this deployer ({type(self.deployer).__name__}): "
                    "stop its instances by hand"
                )
            deadline = started + policy.wait_timeout
            while True:
                before = self.router.read()
                chosen = _retire_target(before, color)
                self._target = chosen
                self._require_no_release_to(chosen)
                if self.deployer.is_retired(chosen):
                    break  # nothing to do: the frame records it under the lock
                verdict = self._retire_verdict(meter, policy, chosen, first_look)
                if verdict.safe:
                    break
                if not wait:
                    raise Refused(verdict.reason)
                if self.clock.now() >= deadline:
                    raise Refused(f"not safe after waiting {policy.wait_timeout:g} s: {verdict.reason}")
                pause_for = min(policy.wait_interval, max(0.5, verdict.safe_at - verdict.now))
                if self._state != S.SETTLING:
                    self._enter(S.SETTLING, verdict.reason)
                else:
                    self.reporter.note(verdict.reason)
                self.cancel.check()
                self.clock.sleep(pause_for)
            if self._state == S.SETTLING:  # a signal held by this transition is raised in the try
                self._enter(S.LOCKING, "safe now: retiring under the lock")
        except BaseException as failure:
            return self._retire_not_started(failure, chosen, verdict, started)
        checked: dict[str, RetireVerdict] = {}

        def run(record: Record, before: Traffic) -> Traffic:
            assert chosen is not None and isinstance(self.deployer, RetiringDeployer)
            record.to_color = chosen
            self._enter(S.CHECKING_TARGET, f"{chosen} must still have weight 0 and no requests")
            _retire_target(before, chosen)  # someone may have shifted since the look above
            self._require_no_release_to(chosen)
            if self.deployer.is_retired(chosen):
                record.details["nothing_to_do"] = (
                    f"nothing to do: {chosen} is already retired (runs no instance)"
                )
                self._enter(S.SUCCEEDED, record.details["nothing_to_do"])
                return before
            checked["under_lock"] = again = self._retire_verdict(
                meter, policy, chosen, first_look, this_record=record.id
            )
            record.details["retire"] = again.as_dict()
            if not again.safe:
                raise Refused(again.reason)
            good = rollback_target(self._release)
            if good is not None and good.color == chosen:
                self._warnings.append(
                    f"{chosen} ran the last known good ({good}): `cutover rollback` has nowhere to go "
                    "until a release passes its gates"
                )
            self._enter(S.RETIRING, f"stopping {chosen}: {again.reason}")
            self.lock.ensure_held(fresh=True)  # fenced, as a weight change is

            def progress(line: str) -> None:
                with contextlib.suppress(LockLost):  # a stop that prints is making progress
                    self.lock.ensure_held()
                self.reporter.note(line)

            # Once stopping starts it finishes (a color half stopped helps no one): a signal
            # now is reported, it does not interrupt. Its release state says it runs nothing
            # before the first instance stops (fenced), so no rollback, not even one that
            # broke the lock meanwhile or follows a failed stop, can choose it.
            with self.cancel.shielded(raise_held=False):
                self._save_state(lambda st: _retired(st, chosen, record.id, self.actor, self._wall()))
                try:
                    self.deployer.retire(chosen, progress)
                except Exception as exc:
                    raise StepFailed(
                        f"stopping {chosen} failed: {exc}; some of its instances may be stopped, so "
                        f"`cutover rollback` will not choose it (traffic was not touched: {chosen} has "
                        f"weight 0); run `cutover retire` again to stop the rest"
                    ) from exc
            return before

        result = self._operate("retire", run)
        final = checked.get("under_lock", verdict)
        retired = result.exit_code == 0
        if retired and not result.reason and final is not None:
            result.reason = f"{chosen} retired: its instances are stopped ({final.reason})"
        result.extra = {
            "retired": retired,
            "color": chosen,
            "wait_seconds": 0 if retired or final is None else final.wait_seconds,
            "verdict": final.as_dict() if final is not None else None,
        }
        return result

    def _retire_verdict(
        self,
        meter: TrafficMeter,
        policy: RetirePolicy,
        color: Color,
        first_look: dict[Color, float],
        *,
        this_record: str = "",
    ) -> RetireVerdict:
        """Read history and the meter (nothing is written) and decide; `this_record` (the
        retire's own, under the lock) is no evidence."""
        now = self._wall()
        first_look.setdefault(color, now)
        records = [r for r in self.history.recent(self.HISTORY_LOOKBACK) if r.id != this_record]
        known = weight_zero_since(color, records)
        lag = float(meter.lag_seconds)
        since = now - policy.settle_seconds - lag - policy.answer_ttl_seconds - 60.0
        last = meter.last_request_at(color, since)
        return RetireVerdict(
            color=color,
            now=now,
            zero_since=first_look[color] if known is None else known,
            zero_since_known=known is not None,
            last_request_at=last,
            policy=policy,
            lag_seconds=lag,
        )

    def _require_no_release_to(self, color: Color) -> None:
        inflight = self.states.load().release
        if inflight is not None and inflight.to_color == color:
            raise Refused(
                f"release {inflight.record_id} of {inflight.image} to {color} did not finish: finish it with "
                "`cutover release --resume`, or go back with `cutover rollback`"
            )

    def _retire_not_started(
        self, failure: BaseException, color: Color | None, verdict: RetireVerdict | None, started: float
    ) -> Result:
        """Before the lock: refused, failed or cancelled, and nothing was changed."""
        record = Record(
            id="",
            operation="retire",
            actor=self.actor,
            env=self.env,
            started_at=self._wall(),
            from_traffic=None,
        )
        signum: int | None = None
        if isinstance(failure, Refused | BadInput):
            self._enter(S.REFUSED, str(failure))
            reason = str(failure)
        elif isinstance(failure, Cancelled):
            signum = failure.signum
            self._enter(S.CANCELLED, f"{failure} while waiting")
            reason = f"{failure} while waiting until retiring is safe; nothing was changed"
        elif isinstance(failure, Exception):
            self._enter(S.FAILED, str(failure))
            reason = f"{type(failure).__name__}: {failure}; nothing was changed"
        else:
            raise failure
        result = self._result("retire", record, reason, None, None, self.clock.now() - started, signum)
        result.extra = {
            "retired": False,
            "color": color,
            "wait_seconds": verdict.wait_seconds
            if verdict is not None and isinstance(failure, Refused)
            else 0,
            "verdict": verdict.as_dict() if verdict is not None else None,
        }
        return result

    # ------------------------------------------------------------------ the frame

    def _operate(
        self, operation: str, run: Callable[[Record, Traffic], Traffic], *, break_lock: bool = False
    ) -> Result:
        record = Record(
            id=uuid.uuid4().hex[:12],
            operation=operation,
            actor=self.actor,
            env=self.env,
            started_at=self._wall(),
            from_traffic=None,
        )
        self._state, self._steps, self._warnings = S.LOCKING, [], []
        self._steps_analysis = []
        self._conclusive = False
        self._last_written = self._pending = self._pending_base = None
        self._target = None
        with retry.deadline() as limit:
            # Once a signal arrives, every AWS call still retrying gives up within seconds.
            self.cancel.on_signal = lambda: limit.tighten(self.gates.cancel_seconds)
            try:
                return self._locked(operation, run, record, break_lock)
            finally:
                self.cancel.on_signal = lambda: None

    def _locked(
        self, operation: str, run: Callable[[Record, Traffic], Traffic], record: Record, break_lock: bool
    ) -> Result:
        """Take the lock, run the operation, decide and record its outcome, release the lock."""
        started = 0.0
        try:  # a signal from here on ends in a Result, never an exception
            started = self.clock.now()
            self.reporter.state(S.LOCKING, self.env)
            holder_before = self.lock.holder() if break_lock else None
            with self.cancel.shielded(raise_held=False):  # a lock taken is a lock released
                self.lock.acquire(self.actor, operation, force=break_lock)
        except BaseException as not_started:
            with self.cancel.shielded(raise_held=False):
                return self._not_started(operation, record, not_started)
        if holder_before:
            record.details["lock_broken"] = holder_before
        before: Traffic | None = None
        failure: BaseException | None = None
        current: Traffic | None = None
        try:
            self.cancel.check()
            self._enter(S.READING)
            try:
                before = current = self.router.read()
                self._release = self.states.load()
            except (BadInput, Cancelled):
                raise
            except Exception as exc:
                raise StepFailed(f"could not read traffic and release state: {exc}") from exc
            if not self._release.version:
                self._adopt(before)
            record.from_traffic = before
            self._close_abandoned(record)
            self._write_history(record)
            self.reporter.note(f"traffic now: {before}")
            current = run(record, before)
        except BaseException as exc:  # every way out is decided below, under the shield
            failure = exc
        with self.cancel.shielded(raise_held=False):
            signum, reason, current = self._decide(failure, record, before, current)
            self.cancel.settle()  # the outcome stands, whatever signal comes next
            with retry.deadline(max(1.0, self.gates.cancel_seconds)):
                self._finish_records(operation, record, reason, before, current, started)
        return self._result(operation, record, reason, before, current, self.clock.now() - started, signum)

    def _not_started(self, operation: str, record: Record, failure: BaseException) -> Result:
        """The lock was not taken: nothing was changed."""
        if isinstance(failure, LockHeld):
            self._enter(S.LOCKED, str(failure))
            return self._result(
                operation, record, f"another operation holds the lock: {failure}", None, None, 0.0
            )
        if isinstance(failure, BadInput):
            self._enter(S.REFUSED, str(failure))
            return self._result(operation, record, str(failure), None, None, 0.0)
        signum = failure.signum if isinstance(failure, Cancelled) else self.cancel.received
        if signum is not None:
            self._enter(S.CANCELLED, f"cancelled by {signal.Signals(signum).name} before the lock was taken")
            return self._result(
                operation, record, "cancelled before anything changed", None, None, 0.0, signum
            )
        if not isinstance(failure, Exception):
            raise failure
        self._enter(S.FAILED, f"could not take the lock: {failure}")
        return self._result(operation, record, f"could not take the lock: {failure}", None, None, 0.0)

    def _decide(
        self, failure: BaseException | None, record: Record, before: Traffic | None, current: Traffic | None
    ) -> tuple[int | None, str, Traffic | None]:
        """The outcome, from where traffic ended: (signal, reason, traffic now)."""
        if self._state == S.SUCCEEDED:  # decided inside the operation ("nothing to roll back")
            return None, str(record.details.get("nothing_to_do", "")), current or before
        if failure is None:
            self._enter(S.SUCCEEDED)
            return None, str(record.details.get("nothing_to_do", "")), current
        if isinstance(failure, Refused | BadInput):
            self._enter(S.REFUSED, str(failure))
            return None, str(failure), current
        if isinstance(failure, Cancelled):
            current, reason = self._restore(before, str(failure), cancelling=True)
            return failure.signum, reason, current
        if isinstance(failure, StepFailed | LockLost | ConcurrentChange):
            reason = str(failure) or type(failure).__name__
        elif isinstance(failure, Exception):  # an adapter raised something unforeseen: still restore
            reason = f"{type(failure).__name__}: {failure}"
        else:  # KeyboardInterrupt or SystemExit without our handler: restore all the same
            reason = f"interrupted ({type(failure).__name__})"
        cancelling = self.cancel.received is not None
        current, reason = self._restore(before, reason, cancelling=cancelling)
        return (self.cancel.received if self._state == S.CANCELLED else None), reason, current

    def _finish_records(
        self,
        operation: str,
        record: Record,
        reason: str,
        before: Traffic | None,
        current: Traffic | None,
        started: float,
    ) -> None:
        """State, lock and history once the outcome is decided: failures here are warnings."""
        if self.cancel.received is not None and self._state == S.SUCCEEDED:
            self._warnings.append("a cancel arrived after the operation had finished: its result stands")
        if (
            self._state in (S.FAILED, S.CANCELLED)
            and operation == "release"
            and self._release.release is not None
            and before is not None
            and before.active is not None
        ):
            # back where it started, all on one color: no release is in flight any more
            # (a resume that failed leaves the interrupted release to resume again)
            self._save_state(end_release, critical=False)
        try:
            self.lock.release()
        except Exception as exc:
            self._warnings.append(f"could not release the lock (its lease runs out on its own): {exc}")
        record.outcome = self._state.value
        record.reason = reason
        record.to_traffic = current
        record.finished_at = self._wall()
        record.seconds = round(self.clock.now() - started, 3)
        record.details["steps"] = self._steps
        if self._steps_analysis:
            record.details["analysis"] = self._steps_analysis[-5:]
        if self._warnings:
            record.details["warnings"] = self._warnings
        if before is not None or self._state != S.REFUSED:
            self._write_history(record, final=True)

    def _result(
        self,
        operation: str,
        record: Record,
        reason: str,
        before: Traffic | None,
        after: Traffic | None,
        seconds: float,
        signum: int | None = None,
    ) -> Result:
        return Result(
            operation,
            self._state,
            reason,
            before,
            after,
            seconds,
            record.id,
            self._steps,
            signal=signum,
            warnings=list(self._warnings),
            target=self._target,
        )

    def _enter(self, state: State, detail: str = "") -> None:
        if state not in STATE_CHART[self._state]:
            raise AssertionError(f"transition {self._state} -> {state} is not in the state chart")
        # A transition is whole: a signal during it is raised after it (and never once an
        # end state is reached: the outcome is decided).
        with self.cancel.shielded(raise_held=bool(STATE_CHART[state])):
            self.transitions.append((self._state, state))
            self._state = state
            self.reporter.state(state, detail)

    # ------------------------------------------------------------------ release state

    def _save_state(self, change: Callable[[ReleaseState], ReleaseState], *, critical: bool = True) -> None:
        """Apply `change` to the stored state with compare-and-swap (re-read on a conflict).

        `critical`: a failure fails the operation; otherwise it becomes a warning (the
        operation's outcome is already decided)."""
        try:
            with self.cancel.shielded():
                for attempt in range(3):
                    if critical:
                        self.lock.ensure_held(fresh=True)  # never write over the state of a lock-breaker
                    try:
                        self._release = self.states.save(change(self._release))
                        return
                    except StateConflict:
                        if attempt == 2:
                            raise
                        self._release = self.states.load()
        except (Cancelled, LockLost):
            raise
        except Exception as exc:
            if critical:
                raise StepFailed(f"could not write the release state: {exc}") from exc
            self._warnings.append(f"could not write the release state: {exc}")
            self.reporter.note(f"warning: could not write the release state: {exc}")

    def _adopt(self, traffic: Traffic) -> None:
        images: dict[Color, str | None] = {color: None for color in COLORS}
        if self.deployer is not None:
            for color in COLORS:
                with contextlib.suppress(Exception):
                    images[color] = self.deployer.current_image(color)
        self.reporter.note("first operation on this environment: recording its release state")
        self._save_state(lambda st: adopt(st, traffic, images, self._wall()))

    def _close_abandoned(self, record: Record) -> None:
        """A release whose process died left its history record "running": close it."""
        inflight = self._release.release
        if inflight is None:
            return
        for old in self.history.recent(50):
            if old.id == inflight.record_id and old.outcome == "running":
                old.outcome = "abandoned"
                old.reason = (
                    f"its process stopped before it finished; found by {record.operation} {record.id}"
                )
                self._write_history(old)

    def _write_history(self, record: Record, *, final: bool = False) -> None:
        """History is the audit trail: a write that fails is a warning, never a lost outcome."""
        try:
            with self.cancel.shielded(raise_held=not final):
                self.history.write(record)
        except BadInput as bad:
            if not final:
                raise  # a missing table: refused, before anything changed
            self._warnings.append(f"could not write history record {record.id}: {bad}")
        except Exception as exc:
            self._warnings.append(f"could not write history record {record.id}: {exc}")
            self.reporter.note(f"warning: could not write history record {record.id}: {exc}")

    # ------------------------------------------------------------------ steps

    def _release_target(
        self, before: Traffic, image: str | None, resume: bool, record: Record
    ) -> tuple[Color, str]:
        inflight = self._release.release
        if resume:
            if inflight is None:
                raise Refused(
                    "there is no interrupted release to resume: start one with `cutover release --image TAG`"
                )
            if image and image != inflight.image:
                raise Refused(
                    f"--resume finishes the interrupted release of {inflight.image} to {inflight.to_color}; "
                    f"drop --image, or pass --image {inflight.image}"
                )
            record.details["resumes"] = inflight.record_id
            self.reporter.note(
                f"resuming release {inflight.record_id}: {inflight.image} to {inflight.to_color}"
            )
            return inflight.to_color, inflight.image
        assert image is not None
        if before.active is None:
            raise Refused(
                f"traffic is split ({before}): finish the release with `release --resume`, or `rollback`"
            )
        target = other(before.active)
        if inflight is not None and before.weight(inflight.to_color) > 0:
            raise Refused(
                f"release {inflight.record_id} of {inflight.image} to {inflight.to_color} did not finish: "
                "finish it with `cutover release --resume`, or go back with `cutover rollback`"
            )
        return target, image

    def _require_healthy(self, color: Color, role: str) -> None:
        passed, why = self.health.ready(color)
        if not passed:
            raise Refused(f"{role} {color} is not healthy: {why}")

    def _deploy(self, color: Color, image: str) -> str | None:
        if self.deployer is None:
            raise StepFailed("no deployer was configured for this operation")

        def progress(line: str) -> None:
            self.lock.ensure_held()  # a deploy that prints is making progress: keep the lease
            self.reporter.note(line)

        try:
            return self.deployer.deploy(color, image, progress)
        except (Cancelled, LockLost):
            raise
        except Exception as exc:
            raise StepFailed(f"deploying {image} to {color} failed: {exc}") from exc

    def _wait_ready(self, color: Color) -> None:
        deadline = self.clock.now() + self.gates.ready_timeout
        in_a_row, last = 0, "no probe yet"
        while in_a_row < self.gates.ready_successes:
            self.lock.ensure_held()
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

    def _shift(self, current: Traffic, color: Color, weight: int, *, gated: bool = True) -> Traffic:
        """One atomic change to `color` at `weight`; every color that gains traffic must
        pass its health gate first, unless `gated` is False (rollback --force)."""
        self.lock.ensure_held()
        target = Traffic.with_weight(color, weight)
        if gated:
            for up in _rising(current, target):
                passed, why = self.health.ready(up)
                if not passed:
                    raise StepFailed(f"{up} failed its gate before taking {target.weight(up)}%: {why}")
        self._enter(S.SHIFTING, f"{current} -> {target}")
        self.lock.ensure_held(fresh=True)  # fenced: a lock broken by on-call stops us here
        changed_at = self.clock.now()
        with self.cancel.shielded():  # a change is sent whole, whatever signal arrives
            self._pending, self._pending_base = target, current
            try:
                applied = self.router.set(target, expected=current)
            except ConcurrentChange:
                self._pending = self._pending_base = None  # refused whole: nothing of ours is live
                raise
            except Exception as exc:
                raise StepFailed(f"changing traffic to {target} failed: {exc}") from exc
            self._pending, self._last_written = None, applied
        try:
            synced = self.router.wait_in_sync(self.gates.sync_timeout)
        except Cancelled:
            raise
        except Exception as exc:
            raise StepFailed(f"{target} did not get in sync: {exc}") from exc
        self._steps.append(
            {"to": applied.as_dict(), "sync_seconds": round(synced, 3), "at": round(changed_at, 3)}
        )
        self.reporter.note(f"{target} in sync after {synced:.2f}s")
        return applied

    def _bake(self, color: Color, seconds: float) -> None:
        end = self.clock.now() + seconds
        said = seconds
        while True:
            self.lock.ensure_held()
            passed, why = self.health.ready(color)
            if not passed:
                raise StepFailed(f"{color} failed its health gate while baking: {why}")
            self._analyse(color)
            left = end - self.clock.now()
            if left <= 0:
                return
            if said - left >= 10 or (left < said and left <= 5):  # a countdown, a line every 10 s
                self.reporter.note(f"baking: {left:.0f}s left, {color} healthy")
                said = left
            self.clock.sleep(min(self.gates.health_interval, left))

    def _analyse(self, color: Color) -> None:
        """Canary analysis: `color` against the other on 5xx share and p99. A breach (or
        metrics that cannot be read) fails the gate: traffic is restored."""
        if self.analysis is None:
            return
        try:
            verdict = self.analysis.check(color, other(color))
        except Exception as exc:
            raise StepFailed(f"canary analysis could not read its metrics: {exc}") from exc
        self._steps_analysis.append(verdict.as_dict())
        if not verdict.passed:
            raise StepFailed(f"canary analysis: {verdict.reason}")
        if verdict.conclusive:
            self._conclusive = True
            self.reporter.note(f"analysis ok: {verdict.reason}")
        else:
            self.reporter.note(f"analysis: no verdict yet ({verdict.reason})")

    def _require_verdict(self, color: Color) -> None:
        """Before all traffic moves, the analysis (when there is one) must have passed on
        enough requests at least once: no data is not a pass (a wrong selector, a missing
        `color` label, a canary nobody used)."""
        if self.analysis is None or self._conclusive:
            return
        self._analyse(color)  # one more look
        if not self._conclusive:
            last = self._steps_analysis[-1]["reason"] if self._steps_analysis else "no data"
            raise StepFailed(
                f"canary analysis reached no verdict before 100% ({last}): bake longer, lower "
                "`analysis.min_requests`, or check that the metrics carry the color"
            )

    def _await_promote(self, color: Color, current: Traffic, record: Record) -> None:
        """A `pause` step: hold here, gating on health and analysis, until `cutover promote`
        (go on) or `cutover abort` (restore) from another shell or CI job. The first
        decision recorded stands."""
        self._enter(
            S.PAUSED,
            f"{color} at {current.weight(color)}%: `cutover promote` goes on, `cutover abort` restores",
        )
        self._save_state(lambda st: pause(st, True))
        deadline = self.clock.now() + self.gates.pause_timeout
        while True:
            self.lock.ensure_held()
            passed, why = self.health.ready(color)
            if not passed:
                raise StepFailed(f"{color} failed its health gate while waiting for promote: {why}")
            self._analyse(color)
            self._release = self.states.load()
            inflight = self._release.release
            decision, by = (inflight.decision, inflight.decided_by) if inflight else (None, None)
            if decision == "abort":
                record.details.setdefault("decisions", []).append({"abort": by})
                raise StepFailed(f"aborted by {by} at the pause")
            if decision == "promote":
                record.details.setdefault("decisions", []).append({"promote": by})
                self.reporter.note(f"promoted by {by}")
                try:
                    self._save_state(lambda st: resumed_pause(st, "promote"))
                except StepFailed as changed:  # an abort cannot land after a promote: belt and braces
                    raise StepFailed(f"the pause decision changed while acting on it: {changed}") from changed
                return
            if self.clock.now() > deadline:
                raise StepFailed(f"no `cutover promote` within {self.gates.pause_timeout:g}s")
            self.clock.sleep(self.gates.health_interval)

    # ------------------------------------------------------------------ restore

    def _restore(
        self, before: Traffic | None, reason: str, *, cancelling: bool = False
    ) -> tuple[Traffic | None, str]:
        """Put the weights back exactly as they were, in one change; never overwrite others.

        The outcome follows from where traffic ends: back where it started (FAILED or
        CANCELLED), or anywhere else (UNRESTORED, exit 4)."""
        ended = S.CANCELLED if cancelling else S.FAILED
        self.reporter.note(f"{'cancelled' if cancelling else 'failed'}: {reason}")
        if before is None:
            self._enter(ended, reason)  # traffic was never read: nothing was touched
            return before, reason
        if self._last_written is None and self._pending is None:  # we touched no weight ...
            with retry.deadline(min(budget_for(self.gates, cancelling), 5.0)):
                live = self._safe_read()
            if live is None or live.same_weights(before):
                self._enter(ended, reason)
                return live or before, reason
            why = f"{reason}; traffic was changed by someone else to {live}: not overwriting it"
            self._enter(S.UNRESTORED, why)  # ... but someone else did: look before acting
            return live, why
        self._enter(S.RESTORING, f"back to {before}")
        budget = budget_for(self.gates, cancelling)
        give_up = self.clock.now() + budget
        last_error = ""
        with retry.deadline(budget), self.cancel.shielded(raise_held=False):
            attempt = 0
            while True:
                attempt += 1
                try:
                    live = self.router.read()
                    if live.same_weights(before):
                        self._enter(ended, reason)
                        return live, reason
                    if not self._is_ours(live):
                        why = f"{reason}; traffic was changed by someone else to {live}: not overwriting it"
                        self._enter(S.UNRESTORED, why)
                        return live, why
                    restored = self.router.set(Traffic(before.blue, before.green), expected=live)
                    self._last_written = restored
                    try:
                        self.router.wait_in_sync(
                            max(0.5, min(self.gates.sync_timeout, give_up - self.clock.now()))
                        )
                    except Exception as exc:  # the change is accepted: it propagates on its own
                        self.reporter.note(f"restored; not yet in sync everywhere ({exc})")
                    self.reporter.note(f"restored {before}")
                    self._enter(ended, reason)
                    return restored, reason
                except ConcurrentChange as exc:
                    last_error = str(exc)  # moved under us: read again and decide again
                except Exception as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                left = min(give_up - self.clock.now(), retry.time_left())
                if left <= 0:
                    break
                self.reporter.note(f"restore attempt {attempt} failed ({last_error}); retrying")
                self.clock.sleep(min(1.0 * attempt, left))
            why = f"{reason}; restoring failed too ({last_error})"
            self._enter(S.UNRESTORED, why)
            return (self._safe_read() if retry.time_left() > 0 else None), why

    def _is_ours(self, live: Traffic) -> bool:
        """Is the live state one this operation wrote (or may have, if a call failed late)?

        Generation AND weights must match: a console edit changes the weights and leaves
        the generation record alone, and that is someone else's change."""
        if self._last_written is not None and live == self._last_written:
            return True
        return (
            self._pending is not None
            and self._pending_base is not None
            and live.same_weights(self._pending)
            and live.generation == self._pending_base.generation + 1
        )

    def _safe_read(self) -> Traffic | None:
        try:
            return self.router.read()
        except Exception:
            return None


def budget_for(gates: Gates, cancelling: bool) -> float:
    """The most a restore may take: short after a signal (CI kills 10 s after SIGINT)."""
    return gates.cancel_seconds if cancelling else gates.restore_seconds


def _rising(current: Traffic, target: Traffic) -> list[Color]:
    """The colors whose share of traffic goes up from `current` to `target`."""
    return [color for color in COLORS if target.share(color) > current.share(color)]


def _resumed(state: ReleaseState, record_id: str) -> ReleaseState:
    assert state.release is not None
    return dataclasses.replace(state, release=dataclasses.replace(state.release, record_id=record_id))


def _retire_target(traffic: Traffic, color: Color | None) -> Color:
    """The color to retire: `color` (which must have weight 0), or the one with weight 0
    while the other takes the traffic. Raises Refused otherwise."""
    if color is not None and traffic.weight(color) > 0:
        raise Refused(
            f"{color} still has weight {traffic.weight(color)}; shift it to 0 first "
            f"(cutover shift --to {other(color)} --weight 100)"
        )
    if traffic.blue == 0 and traffic.green == 0:
        raise Refused(
            "both colors have weight 0 (Route53 then answers with both): put all traffic on one first "
            "(cutover shift --to COLOR --weight 100)"
        )
    if color is not None:
        return color
    idle = [c for c in COLORS if traffic.weight(c) == 0]
    if len(idle) != 1:
        raise Refused(
            f"no color has weight 0 (traffic is split: {traffic}): finish or roll back the release first, "
            "or name one with --color after shifting it to 0"
        )
    return idle[0]


def _retired(state: ReleaseState, color: Color, record_id: str, actor: str, now: float) -> ReleaseState:
    """The color runs nothing any more: never a rollback target."""
    build = ColorBuild(image=None, verified=False, note=f"retired by {actor} (retire {record_id})", at=now)
    return dataclasses.replace(state, colors={**state.colors, color: build})


def _no_known_good(state: ReleaseState) -> str:
    good = state.last_good
    if good is None:
        return (
            "there is no known good build to roll back to (no build has passed its gates and been "
            "live): move traffic by hand with `cutover shift --to COLOR --weight 100`"
        )
    now = state.build(good.color)
    return (
        f"the last known good, {good}, no longer runs on {good.color} (it runs {now.image or 'nothing recorded'}, "
        f"{'verified' if now.verified else 'not verified'}): move traffic by hand with `cutover shift`"
    )
