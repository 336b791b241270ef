"""One retry policy for every AWS call cutover makes: bounded in total time, and audible.

boto3's own retries are switched off (`aws_client` sets `total_max_attempts=1`), so a call
is retried in exactly one place: here. A call that keeps failing with a retryable error
(throttling, a 5xx, a dropped connection) is retried with capped exponential backoff and
jitter until its budget (seconds, for the whole call) runs out; every wait is reported, so
a throttled operation prints a line a second instead of going silent for minutes.

`deadline(seconds)` caps every call made inside a block (this thread only), and can be
tightened while the block runs: once a cancel arrives, every retry in flight gives up within
the few seconds CI grants between SIGINT and SIGKILL.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

T = TypeVar("T")

# Codes that mean the request was refused before it took effect: safe to send again.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
    }
)
# A server error may come after the request took effect.
SERVER_ERROR_CODES = frozenset(
    {"ServiceUnavailable", "InternalError", "InternalFailure", "InternalServerError"}
)


class Deadline:
    """A point in time (time.monotonic()) that calls give up by; it can only move closer."""

    def __init__(self, seconds: float | None = None) -> None:
        self.until = math.inf if seconds is None else time.monotonic() + seconds

    def tighten(self, seconds: float) -> None:
        """Give up `seconds` from now at the latest (a cancel shortens every wait)."""
        self.until = min(self.until, time.monotonic() + seconds)

    def left(self) -> float:
        return self.until - time.monotonic()


_deadlines: contextvars.ContextVar[tuple[Deadline, ...]] = contextvars.ContextVar(
    "cutover_retry_deadlines", default=()
)


class RetryBudgetExhausted(RuntimeError):
    """A call kept failing with retryable errors until its time budget ran out."""


def retryable(exc: BaseException, *, ambiguous: bool = True) -> bool:
    """Throttling (the call was not applied), and unless `ambiguous` is False, a server
    error or a dropped connection (the call may have been applied)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        if error.get("Code") in THROTTLING_CODES:
            return True
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return ambiguous and (error.get("Code") in SERVER_ERROR_CODES or status >= 500)
    return ambiguous and isinstance(exc, ConnectionError | HTTPClientError)


@contextlib.contextmanager
def deadline(seconds: float | None = None) -> Iterator[Deadline]:
    """Every call inside the block (this thread) gives up by the returned deadline, which
    starts `seconds` from now (None: no limit until tightened)."""
    limit = Deadline(seconds)
    token = _deadlines.set((*_deadlines.get(), limit))
    try:
        yield limit
    finally:
        _deadlines.reset(token)


def time_left() -> float:
    """Seconds until the nearest deadline in force (inf when none)."""
    return min((d.left() for d in _deadlines.get()), default=math.inf)


class RetryPolicy:
    """Retries one call while its error is retryable and its budget lasts."""

    def __init__(
        self,
        budget: float = 30.0,
        *,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        note: Callable[[str], None] = lambda _line: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.note = note
        self._sleep = sleep
        self._clock = clock

    def call(self, what: str, method: Callable[..., T], /, *, ambiguous: bool = True, **kwargs: Any) -> T:
        """`method(**kwargs)`, retried; raises the last error once the budget is spent.

        `ambiguous=False` for a call that must not be sent twice (a Route53 change): only
        errors that prove it was not applied (throttling) are retried."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                if not retryable(exc, ambiguous=ambiguous):
                    raise
                now = self._clock()
                # deadlines are on time.monotonic()'s scale, whatever clock this policy uses
                give_up = min(started + self.budget, now + time_left())
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if now + delay >= give_up:
                    raise RetryBudgetExhausted(
                        f"{what}: gave up after {attempt} attempts in {now - started:.1f}s "
                        f"(budget {give_up - started:.0f}s): {describe(exc)}"
                    ) from exc
                self.note(
                    f"{what}: {describe(exc)}; retrying in {delay:.1f}s "
                    f"(attempt {attempt}, {now - started:.0f}s of {give_up - started:.0f}s)"
                )
                self._sleep(delay)


def describe(exc: BaseException) -> str:
    """The AWS error code and message, or the exception's own text."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"
