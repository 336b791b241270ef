"""Readiness: a cached, single-flight database ping, so probes cannot overload Postgres."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class DatabasePing:
    """Pings the database at most once per `cache_seconds`; concurrent callers share a ping."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[object]],
        *,
        timeout: float,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._checked_at = float("-inf")
        self._failure: str | None = "not checked yet"

    async def failure(self) -> str | None:
        """None when the database answered recently, else why it did not."""
        if self._fresh():
            return self._failure
        async with self._lock:
            if not self._fresh():  # another caller may have pinged while we waited
                self._failure = await self._run_ping()
                self._checked_at = self._clock()
        return self._failure

    def _fresh(self) -> bool:
        return self._clock() - self._checked_at < self._cache_seconds

    async def _run_ping(self) -> str | None:
        try:
            await asyncio.wait_for(self._ping(), self._timeout)
        except TimeoutError:
            return f"database did not answer within {self._timeout:g}s"
        except Exception as exc:  # any failure means not ready; the reason says which
            return f"database unreachable: {type(exc).__name__}"
        return None
