"""Serving with uvicorn, plus the graceful drain that zero-downtime releases rely on.

On the first SIGTERM (or SIGINT):
  1. readiness answers 503 at once, so load balancers take this pod out of rotation;
  2. for DRAIN_SECONDS the process keeps serving new and in-flight requests, answering
     with `connection: close` so keep-alive clients reconnect elsewhere;
  3. the listener closes (after refusing new handshakes and accepting what the kernel had
     queued: the close resets no connection) and in-flight requests get up to
     SHUTDOWN_TIMEOUT_SECONDS; a connection with no request under way is answered 503
     with `connection: close` (nothing read, safe to retry elsewhere);
  4. the pool closes and the process exits 0.
A second SIGTERM or SIGINT exits at once (code 128 + signal number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Generator
from types import FrameType

import uvicorn

from ledger.app import create_app
from ledger.config import Settings
from ledger.http_protocol import Connections, HttpLimits, protocol_class
from ledger.listener import refuse_new_handshakes
from ledger.middleware.headers import process_headers
from ledger.runtime import Runtime
from ledger.ws_protocol import LedgerWebSocketProtocol

log = logging.getLogger("ledger.server")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_FD_RESERVE = 128  # descriptors beyond HTTP and websocket clients: pool, feed, peers, logs
# After new connection attempts are dropped: for the handshakes already under way (a round
# trip) to complete and be accepted before the listener closes.
_HANDSHAKE_GRACE_SECONDS = 0.05


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first signal starts a drain instead of an immediate shutdown."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.drain_deadline: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Unlike uvicorn's own, this does not re-raise the signal after shutdown: a drained
        # process exits 0.
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop new handshakes, accept what the kernel already queued, then close the
        listener as uvicorn does.

        Connections waiting in the accept queue would be reset when the listener closes,
        dropping requests their clients already sent. New connection attempts are dropped
        first (see `ledger.listener`), so none can join the queue after the last accept;
        the handshakes under way complete within `_HANDSHAKE_GRACE_SECONDS` and are
        accepted, then answered or refused (503, `connection: close`) like every open
        connection.
        """
        for server in self.servers:
            for listening in server.sockets:
                refuse_new_handshakes(listening)
        await asyncio.sleep(_HANDSHAKE_GRACE_SECONDS)
        for _ in range(3):  # connections accepted in the last poll: their connection_made runs
            await asyncio.sleep(0)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is not None:
            log.warning("second signal %s: exiting now", signal.Signals(sig).name)
            logging.shutdown()
            os._exit(128 + sig)
        self.drain_deadline = time.monotonic() + self.runtime.settings.drain_seconds
        self.runtime.begin_drain()
        log.info(
            "draining",
            extra={
                "signal": signal.Signals(sig).name,
                "drain_seconds": self.runtime.settings.drain_seconds,
                "shutdown_timeout_seconds": self.runtime.settings.shutdown_timeout_seconds,
            },
        )

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            log.info("drain window over: closing the listener")
            return True
        return await super().on_tick(counter)


def serve(settings: Settings) -> int:
    """Run ledger until drained; returns the process exit code."""
    # x-served-by and the security headers are the same on every response of the process:
    # uvicorn writes them as default headers (ledger's protocol renders them once a second,
    # with the date), which also puts them on responses the app never sees.
    app, runtime = create_app(settings, server_adds_process_headers=True)
    metrics = runtime.metrics
    connections = Connections(
        HttpLimits(
            max_header_bytes=settings.http_max_header_bytes,
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            max_connections=settings.http_max_connections,
        ),
        on_closed=lambda reason: metrics.http_connections_closed.labels(reason).inc(),
        on_count=metrics.http_connections.set,
    )
    _fd_headroom(settings.http_max_connections + settings.ws_max_connections)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol_class(settings.served_by, connections),
        lifespan="on",
        access_log=False,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        headers=[(name.decode(), value.decode()) for name, value in process_headers(settings.served_by)],
        # uvicorn annotates int but uses it as asyncio.wait_for's timeout: fractions work.
        timeout_graceful_shutdown=max(settings.shutdown_timeout_seconds, 0.001),  # type: ignore[arg-type]
        # An idle keep-alive connection lives HTTP_KEEP_ALIVE_SECONDS (default 75): longer
        # than the load balancer's idle timeout (ALB: 60 s), or the balancer reuses a
        # connection the app just closed and answers 502. Float works as for the above.
        timeout_keep_alive=settings.http_keep_alive_seconds,  # type: ignore[arg-type]
        ws=LedgerWebSocketProtocol,
        # The feed ignores what clients send: a frame past this closes the socket (1009).
        ws_max_size=settings.ws_max_message_bytes,
    )
    server = DrainingServer(config, runtime)
    server.run()
    if not server.started:
        print("ledger: could not start the server (see the log above)", file=sys.stderr)
        return 1
    return 0


def _fd_headroom(max_connections: int) -> None:
    """Raise the open-file soft limit so the connection caps (HTTP and websocket), not EMFILE,
    are what bound us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning(
                "open-file limit %d is below HTTP_MAX_CONNECTIONS + WS_MAX_CONNECTIONS + %d: lower them",
                target,
                _FD_RESERVE,
            )
