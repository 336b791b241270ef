"""/health/live through ledger (its HTTP protocol and middleware) vs a bare ASGI app.

Both run on the same server stack (uvicorn, uvloop, httptools); the bare app on uvicorn's
stock HTTP protocol, so what ledger's own protocol costs per request (limits, refusals,
drain bookkeeping) counts as ledger's overhead, as much as its middleware does.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Server, median, wrk

BENCH_DIR = Path(__file__).parent
ROUNDS = 5  # interleaved pairs: the ratio is the median of the five rounds' ratios
SECONDS = 4
CONNECTIONS = 64


@dataclass(frozen=True)
class Result:
    ledger_rps: float  # medians of the rounds
    bare_rps: float
    round_ratios: tuple[float, ...]  # ledger / bare, each round measured back to back

    @property
    def ratio(self) -> float:
        """The median round's ratio: a load spike from a neighbour on a shared machine hits
        one round's pair, not the estimate (a ratio of medians mixes rounds far apart)."""
        return median(list(self.round_ratios))


def run(database_url: str) -> Result:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        "DRAIN_SECONDS": "0",
    }
    bare_cmd = [
        sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", "127.0.0.1", "--port", "{port}",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    ledger_rates: list[float] = []
    bare_rates: list[float] = []
    for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both alike
        for command, rates in (
            ([sys.executable, "-m", "ledger", "serve"], ledger_rates),
            (bare_cmd, bare_rates),
        ):
            server = Server(command, env, cwd=BENCH_DIR.parent).wait_ready("/health/live")
            try:
                wrk(server.url + "/health/live", seconds=1, connections=CONNECTIONS)  # warm-up
                rates.append(wrk(server.url + "/health/live", seconds=SECONDS, connections=CONNECTIONS))
            finally:
                server.stop()
    ratios = tuple(ledger / bare for ledger, bare in zip(ledger_rates, bare_rates, strict=True))
    return Result(median(ledger_rates), median(bare_rates), ratios)
