"""SIGINT and SIGTERM as a clean cancel: traffic restored, lock released, history finished.

A signal raises `Cancelled` in the main thread at once, wherever it is (a bake, a deploy,
a readiness wait, a throttled retry), except inside a shielded block: a change being sent
to the router, a state or lock write, or the restore itself. There the signal is held and
raised when the block ends, so a change is never abandoned half sent. A second signal
while the cancel is under way changes nothing: the restore finishes first.

CI cancels a job with SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that, so
the restore that follows a cancel is bounded to a few seconds (Gates.cancel_seconds).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any


class Cancelled(BaseException):
    """The operation was cancelled by a signal.

    A BaseException, like KeyboardInterrupt: no `except Exception` in an adapter swallows it
    or turns it into an ordinary failure."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"cancelled by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class CancelScope:
    """Where signals become `Cancelled`. Without `install()`, only `deliver` raises it
    (the property tests deliver signals at chosen steps)."""

    def __init__(self) -> None:
        self._shield = 0
        self._held: int | None = None
        self._settled = False
        self.received: int | None = None  # the first signal, once one arrived
        self.on_signal: Callable[[], None] = lambda: None  # e.g. shorten every wait
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in this (main) thread until `uninstall`."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous.setdefault(signum, signal.signal(signum, self._handler))

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self.deliver(signum)

    def deliver(self, signum: int) -> None:
        """A signal arrived: raise now, or hold it until the shielded block ends."""
        if self.received is not None or self._settled:
            if self.received is None:
                self.received = signum
            return  # already cancelling (the restore finishes first), or the outcome is decided
        self.received = signum
        self.on_signal()
        if self._shield:
            self._held = signum
            return
        raise Cancelled(signum)

    def settle(self) -> None:
        """The outcome is decided: from now on a signal changes nothing (nor kills the
        process while it prints the outcome)."""
        self._settled = True
        self._held = None
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    @contextlib.contextmanager
    def shielded(self, *, raise_held: bool = True) -> Iterator[None]:
        """Hold signals for the block; raise a held one after it, unless `raise_held` is False."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1
        if self._shield == 0 and self._held is not None and raise_held:
            held, self._held = self._held, None
            raise Cancelled(held)

    def check(self) -> None:
        """Raise a held signal now (outside any shield)."""
        if self._shield == 0 and self._held is not None:
            held, self._held = self._held, None
            raise Cancelled(held)
