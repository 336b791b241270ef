"""Serving with uvicorn, and the graceful drain a blue/green cutover relies on.

On the first SIGTERM (or SIGINT):
  1. /readyz answers 503 at once, so the load balancer takes this instance out of rotation;
  2. for DRAIN_SECONDS greeter keeps serving (requests still routed here, or on open
     keep-alive connections), answering with `connection: close` so clients reconnect
     elsewhere;
  3. the listener closes (new connections are refused) and requests in flight get up to
     SHUTDOWN_TIMEOUT_SECONDS to finish;
  4. the process exits 0.
A second signal stops at once: in-flight requests are cut off and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import uvicorn

from greeter.app import Lifecycle, create_app
from greeter.settings import Settings, SettingsError


def log_event(event: str, settings: Settings, **fields: Any) -> None:
    """One JSON line on stdout per lifecycle event."""
    line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
    line |= {"service": "greeter", "served_by": settings.served_by, "version": settings.app_version, **fields}
    print(json.dumps(line), flush=True)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first signal starts a drain instead of an immediate shutdown."""

    def __init__(self, config: uvicorn.Config, settings: Settings, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.settings = settings
        self.lifecycle = lifecycle
        self.drain_signal: int | None = None
        self.drain_deadline = 0.0
        self.drain_logged = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # This runs as a signal handler, between two bytecodes of whatever was running: it only
        # flips flags (printing here could re-enter stdout). on_tick, in the event loop, acts.
        # Unlike uvicorn's own handler it records no signal to re-raise, so a drain exits 0.
        if self.drain_signal is not None:
            self.should_exit = self.force_exit = True
            return
        self.drain_deadline = time.monotonic() + self.settings.drain_seconds
        self.drain_signal = sig
        self.lifecycle.draining = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.lifecycle.started = True
            log_event("started", self.settings, host=self.config.host, port=self.config.port, pid=os.getpid())

    async def on_tick(self, counter: int) -> bool:
        """Called every 0.1 s by uvicorn's main loop; True ends it and starts the shutdown."""
        if self.drain_signal is not None and not self.drain_logged:
            self.drain_logged = True
            log_event(
                "draining",
                self.settings,
                signal=signal.Signals(self.drain_signal).name,
                drain_seconds=self.settings.drain_seconds,
                shutdown_timeout_seconds=self.settings.shutdown_timeout_seconds,
            )
        if self.drain_signal is not None and time.monotonic() >= self.drain_deadline:
            return True
        return await super().on_tick(counter)


def main() -> int:
    """Serve until drained; the process exit code (2: a bad environment variable)."""
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"greeter: {error}", file=sys.stderr)
        return 2
    lifecycle = Lifecycle()
    config = uvicorn.Config(
        create_app(settings, lifecycle),
        host=settings.host,
        port=settings.port,
        lifespan="off",
        ws="none",
        headers=[("x-served-by", settings.served_by)],  # on every response, uvicorn's own 400s too
        server_header=False,
        access_log=False,
        log_config=None,  # uvicorn's warnings and errors still reach stderr; stdout is ours
        # uvicorn annotates these int but uses them as timeouts, so fractions of a second work.
        timeout_keep_alive=settings.http_keep_alive_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,  # type: ignore[arg-type]
    )
    server = DrainingServer(config, settings, lifecycle)
    server.run()
    log_event("stopped", settings, forced=server.force_exit)
    return 1 if server.force_exit else 0
