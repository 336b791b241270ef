"""The small interfaces the release state machine drives. Adapters live in cutover.adapters."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from cutover.model import Color, Traffic, parse_color


class ConcurrentChange(RuntimeError):
    """Traffic changed since it was read: someone else wrote. Nothing was overwritten."""


class LockHeld(RuntimeError):
    """Another operation holds the environment's lock."""

    def __init__(self, holder: dict[str, Any]) -> None:
        super().__init__(f"locked by {holder.get('owner', '?')} ({holder.get('operation', '?')})")
        self.holder = holder


class LockLost(RuntimeError):
    """This operation's lease was taken over or could not be renewed."""


class TrafficRouter(Protocol):
    """Reads and sets the weights of blue and green, atomically, with compare-and-swap."""

    def read(self) -> Traffic: ...

    def set(self, target: Traffic, expected: Traffic) -> Traffic:
        """Move from `expected` (as read) to `target`'s weights in one atomic change.

        Raises ConcurrentChange if the live state is no longer `expected`. Returns the new
        state (with its new generation) once it is applied, before it is in sync.
        """
        ...

    def wait_in_sync(self, timeout: float) -> float:
        """Block until the last change is served everywhere; returns the seconds waited."""
        ...


class Deployer(Protocol):
    """Puts an image on a color and reports what each color runs."""

    def deploy(self, color: Color, image: str, progress: Callable[[str], None]) -> str | None:
        """Run `image` on `color` and wait until it is rolled out; returns the image digest
        when the deployer knows it (None otherwise)."""
        ...

    def current_image(self, color: Color) -> str | None: ...


class TrafficMeter(Protocol):
    """When a color last received a request, as its proxy or load balancer saw it.

    Used by `cutover retire`: a color is stopped only once its requests have stopped."""

    @property
    def lag_seconds(self) -> float:
        """How far behind now the meter's data may be: a request younger than this may not
        show yet (an access log's flush interval, CloudWatch's publishing delay)."""
        ...

    def last_request_at(self, color: Color, since: float) -> float | None:
        """The wall-clock time (epoch seconds) of the newest request `color` received at
        or after `since`; None when it received none in that time. Raises MeterError when
        it cannot tell (a log it cannot read, a failed API call): no answer is not quiet."""
        ...


class MeterError(RuntimeError):
    """A traffic meter could not read its data."""


@runtime_checkable
class RetiringDeployer(Protocol):
    """A deployer that can also stop a color (`cutover retire`)."""

    def retire(self, color: Color, progress: Callable[[str], None]) -> None:
        """Stop every instance of `color` and wait until they are gone (each drains)."""
        ...

    def is_retired(self, color: Color) -> bool:
        """True when `color` runs no instance (nothing to retire)."""
        ...


class Lock(Protocol):
    """One operation at a time per environment, as a lease renewed while it runs."""

    def acquire(self, owner: str, operation: str, *, force: bool = False) -> None:
        """Take the lock, or raise LockHeld. `force` takes it whoever holds it."""
        ...

    def ensure_held(self, *, fresh: bool = False) -> None:
        """Raise LockLost if the lease is no longer ours (`fresh`: checked against the
        stored lease, not the renewer's last look); a heartbeat that keeps it renewed."""
        ...

    def release(self) -> None: ...

    def holder(self) -> dict[str, Any] | None: ...


@dataclass
class Record:
    """One audit entry: a release, shift or rollback, from start to outcome.

    Stored (history file, DynamoDB) and printed (`cutover history --json`) as `to_dict()`:
    traffic as {"blue", "green", "generation"}, `from_traffic` {} until traffic was read."""

    id: str
    operation: str  # release | shift | rollback | retire
    actor: str
    env: str
    started_at: float
    from_traffic: Traffic | None  # None until the operation read the traffic
    image: str | None = None
    to_color: Color | None = None
    to_traffic: Traffic | None = None
    outcome: str = "running"  # running | a machine end state | abandoned (its process died)
    reason: str = ""
    finished_at: float | None = None
    seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, as history has always stored it."""
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        raw["from_traffic"] = self.from_traffic.as_dict() if self.from_traffic is not None else {}
        raw["to_traffic"] = self.to_traffic.as_dict() if self.to_traffic is not None else None
        raw["details"] = copy.deepcopy(self.details)
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Record:
        """A stored record, this or any earlier version of cutover's."""
        return cls(
            **{
                **raw,
                "from_traffic": _traffic(raw.get("from_traffic")),
                "to_color": parse_color(raw["to_color"]) if raw.get("to_color") else None,
                "to_traffic": _traffic(raw.get("to_traffic")),
            }
        )


def _traffic(raw: dict[str, int] | None) -> Traffic | None:
    return Traffic(raw["blue"], raw["green"], raw.get("generation", 0)) if raw else None


class History(Protocol):
    def write(self, record: Record) -> None:
        """Insert or update (by id) one record."""
        ...

    def recent(self, limit: int = 20) -> list[Record]:
        """Newest first."""
        ...


class Health(Protocol):
    """Health of one color, checked on that color's own endpoint."""

    def ready(self, color: Color) -> tuple[bool, str]:
        """(passed, reason) of one readiness probe."""
        ...

    def smoke(self, color: Color) -> tuple[bool, str]:
        """(passed, reason) of the configured smoke checks."""
        ...

    def endpoint(self, color: Color) -> str: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...
