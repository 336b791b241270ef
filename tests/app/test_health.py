"""The cached, single-flight database ping behind /health/ready."""

from __future__ import annotations

import asyncio

from ledger.health import DatabasePing


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ping_is_cached_and_shared_by_concurrent_probes() -> None:
    calls = 0
    clock = Clock()

    async def ping() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)

    async def run() -> list[str | None]:
        checker = DatabasePing(ping, timeout=1, cache_seconds=1, clock=clock)
        first = await asyncio.gather(*(checker.failure() for _ in range(50)))
        clock.now = 0.5
        cached = await checker.failure()
        clock.now = 1.5
        refreshed = await checker.failure()
        return [*first, cached, refreshed]

    results = asyncio.run(run())
    assert results == [None] * 52
    assert calls == 2


def test_slow_or_failing_database_gives_a_reason() -> None:
    async def slow() -> None:
        await asyncio.sleep(1)

    async def broken() -> None:
        raise ConnectionRefusedError

    async def run() -> tuple[str | None, str | None]:
        timed_out = await DatabasePing(slow, timeout=0.05, cache_seconds=0).failure()
        refused = await DatabasePing(broken, timeout=1, cache_seconds=0).failure()
        return timed_out, refused

    timed_out, refused = asyncio.run(run())
    assert timed_out == "database did not answer within 0.05s"
    assert refused == "database unreachable: ConnectionRefusedError"
