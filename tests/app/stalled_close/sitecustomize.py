"""Fault injection for tests/app/test_drain_edge.py, loaded by a `ledger serve` whose
PYTHONPATH starts here: with LEDGER_TEST_CLOSE_STALL=<seconds>, the process stalls that
long (blocking, as if kept off the CPU) just before uvicorn closes the listener, so
connection attempts in that gap show what the close does to them."""

from __future__ import annotations

import os
import socket
import time

import uvicorn.server

_STALL = float(os.environ.get("LEDGER_TEST_CLOSE_STALL", "0"))

if _STALL > 0:
    _close_listener = uvicorn.server.Server.shutdown

    async def _stalled_shutdown(
        self: uvicorn.server.Server, sockets: list[socket.socket] | None = None
    ) -> None:
        time.sleep(_STALL)  # blocking on purpose: the loop accepts nothing meanwhile
        await _close_listener(self, sockets)

    uvicorn.server.Server.shutdown = _stalled_shutdown  # type: ignore[method-assign]
