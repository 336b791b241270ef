"""The rate limiter's cost on a cheap route that passes through it: on vs off."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from bench.harness import Server, median, wrk

ROUNDS = 3
SECONDS = 3


@dataclass(frozen=True)
class Result:
    on_rps: float
    off_rps: float

    @property
    def ratio(self) -> float:
        return self.on_rps / self.off_rps


def run(database_url: str) -> Result:
    base = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "DRAIN_SECONDS": "0",
    }
    # On: a limit so high that no request is refused, so both runs do the same work after it.
    settings = {"on": {"RATE_LIMIT_PER_MINUTE": "10000000"}, "off": {"RATE_LIMIT_PER_MINUTE": "0"}}
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(ROUNDS):
        for name, extra in settings.items():
            server = Server([sys.executable, "-m", "ledger", "serve"], {**base, **extra}).wait_ready(
                "/health/live"
            )
            try:
                wrk(server.url + "/cluster", seconds=1, connections=64)
                rates[name].append(wrk(server.url + "/cluster", seconds=SECONDS, connections=64))
            finally:
                server.stop()
    return Result(median(rates["on"]), median(rates["off"]))
