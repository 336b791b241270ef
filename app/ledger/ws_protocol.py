"""ledger's websocket protocol: uvicorn's websockets (sans-I/O) protocol, with a close that
reaches even a client that stopped reading.

uvicorn's `send` first waits until the transport is writable. A subscriber that stopped
reading never makes it writable again, so closing it (1013, it fell too far behind) waited
for the keepalive ping to time out, about 40 s. Here a close to such a client writes the
close frame behind what it has not read and drops the connection `SLOW_CLOSE_SECONDS` later
if it still has not read: the 1,024-message bound is what closes it.

uvicorn also answers every ping with a pong written whatever the client has not read, so a
client that sends pings and never reads filled memory with pongs. Here a pong that leaves
more than `MAX_UNREAD_BYTES` unsent closes the connection the same way (1008).
"""

from __future__ import annotations

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SLOW_CLOSE_SECONDS = 1.0
MAX_UNREAD_BYTES = 1024 * 1024  # written to a client and not yet taken by it
POLICY_VIOLATION = 1008


class LedgerWebSocketProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol that does not wait on a client that stopped reading to close it."""

    async def send(self, message: ASGISendEvent) -> None:
        """As uvicorn's, except a close while the client is not reading (see module doc)."""
        if (
            message["type"] == "websocket.close"
            and not self.writable.is_set()
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and not self.transport.is_closing()
        ):
            self._close_unread(message.get("code", 1000), message.get("reason", "") or "")
            return
        await super().send(message)

    def handle_ping(self) -> None:
        """As uvicorn's (the pong is written), but a client not reading its pongs is closed."""
        if self.close_sent:
            self.conn.data_to_send()  # closing already: no more pongs for it
            return
        super().handle_ping()
        if self.transport.get_write_buffer_size() > MAX_UNREAD_BYTES and not self.transport.is_closing():
            self.transport.pause_reading()
            self._close_unread(POLICY_VIOLATION, "too many unread pongs")

    def _close_unread(self, code: int, reason: str) -> None:
        """Close frame behind what the client has not read; dropped if still unread soon after."""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.close_timer = self.loop.call_later(SLOW_CLOSE_SECONDS, self.transport.abort)
