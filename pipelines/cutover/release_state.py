"""The durable release state of one environment: what each color runs, whether that build
passed its gates, which build is the last known good, and the release in flight.

It lives where every machine sees it (the DynamoDB lock table in AWS, a file locally) and is
written with compare-and-swap on `version`. The release machine changes it only through the
pure functions below, so the rules can be read (and tested) in one place:

- a build is `verified` once it passed readiness and smoke checks and took all the traffic
  a release gave it; a color whose build has not is never a rollback target;
- `last_good` is where a rollback goes: the verified build traffic was on before the
  release that is live now (or the live build itself, after a rollback);
- a rollback rejects the build it moves away from, so a second rollback finds traffic
  already on the last known good and changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from cutover.model import COLORS, Color, Traffic, other


class StateConflict(RuntimeError):
    """The release state changed since it was read (another writer)."""


@dataclass(frozen=True)
class Build:
    """An image on a color."""

    color: Color
    image: str | None  # None: not known (recorded from a live environment cutover first saw)

    def __str__(self) -> str:
        return f"{self.color} ({self.image or 'image not recorded'})"


@dataclass(frozen=True)
class ColorBuild:
    image: str | None = None
    digest: str | None = None
    verified: bool = False
    note: str = ""  # why it is (not) verified: "passed its gates in release X", "rolled back by ..."
    at: float | None = None


@dataclass(frozen=True)
class InFlight:
    """A release that started and has not finished (running, or its process died)."""

    record_id: str
    image: str
    to_color: Color
    from_traffic: dict[str, int]
    started_at: float
    steps: tuple[int, ...] = ()  # the strategy it runs (a resume runs the same, gates included)
    bake_seconds: float | None = None
    paused: bool = False  # waiting at a `pause` step
    decision: str | None = None  # "promote" or "abort", set by `cutover promote|abort`
    decided_by: str | None = None


@dataclass(frozen=True)
class ReleaseState:
    version: int = 0  # 0: never written
    colors: dict[str, ColorBuild] = field(default_factory=lambda: {color: ColorBuild() for color in COLORS})
    last_good: Build | None = None
    release: InFlight | None = None

    def build(self, color: Color) -> ColorBuild:
        return self.colors.get(color, ColorBuild())

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReleaseState:
        last_good = raw.get("last_good")
        release = raw.get("release")
        if release:
            release = {**release, "steps": tuple(release.get("steps") or ())}
        return cls(
            version=int(raw.get("version", 0)),
            colors={c: ColorBuild(**(raw.get("colors") or {}).get(c, {})) for c in COLORS},
            last_good=Build(**last_good) if last_good else None,
            release=InFlight(**release) if release else None,
        )


class ReleaseStateStore(Protocol):
    def load(self) -> ReleaseState:
        """The current state (version 0 when none was ever written)."""
        ...

    def save(self, state: ReleaseState) -> ReleaseState:
        """Write `state` if the stored version is still `state.version`; returns it with the
        next version. Raises StateConflict otherwise."""
        ...


# ---------------------------------------------------------------------- transitions


def _with_color(state: ReleaseState, color: Color, build: ColorBuild) -> dict[str, ColorBuild]:
    return {**state.colors, color: build}


def adopt(state: ReleaseState, traffic: Traffic, images: dict[Color, str | None], now: float) -> ReleaseState:
    """The first record of an environment cutover has not seen before: the color that has
    all the traffic is the known good (it is what serves users); the other color is not."""
    if state.version:
        return state
    active = traffic.active
    colors = dict(state.colors)
    for color in COLORS:
        colors[color] = ColorBuild(
            image=images.get(color),
            verified=color == active,
            note="live when cutover first recorded this environment"
            if color == active
            else "not verified by cutover",
            at=now,
        )
    return dataclasses.replace(
        state,
        colors=colors,
        last_good=Build(active, images.get(active)) if active else None,
    )


def begin_release(
    state: ReleaseState,
    record_id: str,
    image: str,
    target: Color,
    before: Traffic,
    now: float,
    steps: tuple[int, ...] = (),
    bake_seconds: float | None = None,
) -> ReleaseState:
    """`image` is about to be deployed on `target`: that color is unverified from now on, and
    the build now live (if verified) becomes the rollback target."""
    live = other(target)
    last_good = state.last_good
    if state.build(live).verified and before.active == live:
        last_good = Build(live, state.build(live).image)
    elif last_good is not None and last_good.color == target:
        last_good = None  # its build is being replaced
    return dataclasses.replace(
        state,
        colors=_with_color(
            state, target, ColorBuild(image=image, note=f"deploying (release {record_id})", at=now)
        ),
        last_good=last_good,
        release=InFlight(record_id, image, target, before.as_dict(), now, tuple(steps), bake_seconds),
    )


def deployed(state: ReleaseState, color: Color, digest: str | None) -> ReleaseState:
    """The deployer finished; the digest (when it knows one) pins what runs."""
    build = dataclasses.replace(state.build(color), digest=digest)
    return dataclasses.replace(state, colors=_with_color(state, color, build))


def finish_release(state: ReleaseState, record_id: str, color: Color, now: float) -> ReleaseState:
    """The release took all traffic through every gate: its build is verified."""
    build = dataclasses.replace(
        state.build(color), verified=True, note=f"passed its gates in release {record_id}", at=now
    )
    return dataclasses.replace(state, colors=_with_color(state, color, build), release=None)


def end_release(state: ReleaseState) -> ReleaseState:
    """The release failed or was cancelled and traffic is back: nothing is in flight."""
    return dataclasses.replace(state, release=None)


def rolled_back(state: ReleaseState, to: Build, record_id: str, actor: str, now: float) -> ReleaseState:
    """Traffic is all on `to` (the last known good): the build it left is rejected."""
    away = other(to.color)
    rejected = dataclasses.replace(
        state.build(away), verified=False, note=f"rolled back by {actor} (rollback {record_id})", at=now
    )
    return dataclasses.replace(state, colors=_with_color(state, away, rejected), last_good=to, release=None)


def rollback_target(state: ReleaseState) -> Build | None:
    """Where a rollback goes: the last known good, if its color still runs it verified."""
    good = state.last_good
    if good is None:
        return None
    build = state.build(good.color)
    if not build.verified or build.image != good.image:
        return None
    return good


def pause(state: ReleaseState, paused: bool) -> ReleaseState:
    """The release in flight starts (or stops) waiting at a pause; a decision is consumed."""
    assert state.release is not None
    inflight = dataclasses.replace(state.release, paused=paused, decision=None, decided_by=None)
    return dataclasses.replace(state, release=inflight)


class DecisionTaken(ValueError):
    """A promote or abort is already recorded for this pause: the first one stands."""


def decide(state: ReleaseState, decision: str, actor: str) -> ReleaseState:
    """`cutover promote` / `cutover abort` for the release waiting at a pause. The first
    decision stands: a later one (even a second click) is refused, never silently applied."""
    assert state.release is not None and state.release.paused
    if state.release.decision is not None:
        raise DecisionTaken(f"{state.release.decision} is already recorded by {state.release.decided_by}")
    inflight = dataclasses.replace(state.release, decision=decision, decided_by=actor)
    return dataclasses.replace(state, release=inflight)


def resumed_pause(state: ReleaseState, decision: str) -> ReleaseState:
    """The release acted on `decision`: it is no longer paused (the decision is kept in history)."""
    assert state.release is not None
    if state.release.decision not in (None, decision):
        raise DecisionTaken(f"{state.release.decision} was recorded meanwhile by {state.release.decided_by}")
    inflight = dataclasses.replace(state.release, paused=False, decision=None, decided_by=None)
    return dataclasses.replace(state, release=inflight)
