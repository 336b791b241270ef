"""One retry policy for every AWS call cutover makes: bounded in total time, and audible.

boto3's own retries are switched off (`aws_client` sets `total_max_attempts=1`), so a call
is retried in exactly one place: here. A call that keeps failing with a retryable error
(throttling, a 5xx, a dropped connection) is retried with capped exponential backoff and
jitter until its budget (seconds, for the whole call) runs out; every wait is reported, so
a throttled operation prints a line a second instead of going silent for minutes.

`deadline(seconds)` caps every call made inside a block (this thread only): a cancelled
operation restores traffic within the few seconds CI grants between SIGINT and SIGKILL.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

T = TypeVar("T")

RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
    }
)

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "cutover_retry_deadline", default=None
)


class RetryBudgetExhausted(RuntimeError):
    """A call kept failing with retryable errors until its time budget ran out."""


def retryable(exc: BaseException) -> bool:
    """Throttling, a server-side error, or a connection that failed or dropped."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return error.get("Code") in RETRYABLE_CODES or status >= 500
    return isinstance(exc, ConnectionError | HTTPClientError)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every call inside the block gives up `seconds` from now at the latest."""
    until = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(until if current is None else min(current, until))
    try:
        yield
    finally:
        _deadline.reset(token)


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

    def call(self, what: str, method: Callable[..., T], /, **kwargs: Any) -> T:
        """`method(**kwargs)`, retried; raises the last error once the budget is spent."""
        started = self._clock()
        give_up = started + self.budget
        capped = _deadline.get()  # on time.monotonic()'s scale, whatever clock this policy uses
        if capped is not None:
            give_up = min(give_up, started + capped - time.monotonic())
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                if not retryable(exc):
                    raise
                now = self._clock()
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
