"""TrafficRouter on a local Envoy: weights live in its route file (file-based xDS).

The weights and their generation are kept in `traffic.json` beside the route file; a
change is a compare-and-swap on that file under flock, then an atomic rename of the route
file, and the router reports it in sync only once Envoy's admin interface serves the new
version.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from cutover.envoy.weights import EnvoyLayout, served_version, write_routes
from cutover.model import BadInput, Traffic
from cutover.ports import ConcurrentChange


class EnvoyRouter:
    def __init__(self, layout: EnvoyLayout) -> None:
        self.layout = layout
        self._state = layout.directory / "traffic.json"
        self._pending: int | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any], base: Path | None = None) -> EnvoyRouter:
        return cls(EnvoyLayout.from_dict(spec["layout"], base))

    def initialize(self, traffic: Traffic) -> None:
        """Write the first state (before Envoy starts)."""
        self.layout.directory.mkdir(parents=True, exist_ok=True)
        self._write_state(traffic)
        write_routes(self.layout, traffic)

    def read(self) -> Traffic:
        try:
            raw = json.loads(self._state.read_text())
        except FileNotFoundError:
            raise BadInput(f"no traffic state at {self._state}: is the local environment running?") from None
        return Traffic(int(raw["blue"]), int(raw["green"]), int(raw["generation"]))

    def set(self, target: Traffic, expected: Traffic) -> Traffic:
        with self._state.open("r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            raw = json.loads(handle.read())
            live = Traffic(int(raw["blue"]), int(raw["green"]), int(raw["generation"]))
            if live != expected:
                raise ConcurrentChange(f"traffic is {live} (generation {live.generation}), not {expected}")
            applied = Traffic(target.blue, target.green, expected.generation + 1)
            write_routes(self.layout, applied)
            self._write_state(applied)
        self._pending = applied.generation
        return applied

    def wait_in_sync(self, timeout: float) -> float:
        """Until Envoy's admin interface reports the version just written."""
        if self._pending is None:
            return 0.0
        started = time.monotonic()
        while served_version(self.layout) != str(self._pending):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"envoy does not serve route version {self._pending} after {timeout:g}s")
            time.sleep(0.02)
        return time.monotonic() - started

    def _write_state(self, traffic: Traffic) -> None:
        tmp = self._state.with_name(f".traffic.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(traffic.as_dict()))
        os.replace(tmp, self._state)
