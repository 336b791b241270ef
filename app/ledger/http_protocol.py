"""ledger's HTTP/1.1 protocol: uvicorn's httptools protocol, bounded against hostile clients.

uvicorn's httptools protocol has no limit on header size, no timeout on a request that
never finishes arriving, and no cap on connections. This subclass adds them, and makes the
answers it gives before the application sees a request look like ledger's own (JSON error,
request id, `x-served-by`, security headers, `connection: close`):

- headers larger than `max_header_bytes` (request line included), trailers counted with
  them: 431, connection closed. Every parsed URL piece and header counts, and so does every
  byte received since the parser last made progress (a header line still arriving, the
  headers of a pipelined request while the previous one runs); while a response is under
  way the connection stops reading and the 431 follows that response;
- headers not complete `header_timeout` seconds after the connection opened or the first
  byte of the request arrived: 408 (a silent or half-sent request), connection closed. An
  idle keep-alive connection between requests is not a slow request: uvicorn's keep-alive
  timeout (HTTP_KEEP_ALIVE_SECONDS, longer than the load balancer's idle timeout) closes it;
- a body not complete `body_timeout` seconds after its headers: 408, connection closed;
- at `max_connections` open connections a new one evicts the one stalled longest: waiting
  for (the rest of) a request's headers or body, like a slowloris, the longest (an active
  keep-alive client has waited only since its last response). One with part of a request
  received, or one that served requests (a request may be on the wire), is answered 503
  with `connection: close` first. When every connection has a request the application is
  answering, the new one takes one of `health_reserve` places kept for the health probes:
  a request there for anything but /health/live or /health/ready is answered 503, and the
  connection closes after its one answer;
- a request the parser refuses (bad or duplicate Content-Length, NUL in a header): 400;
- at shutdown, a connection with no request under way: 503, so a request in flight on it is
  refused cleanly instead of dropped;
- every request's scope carries `extensions["ledger.connection"]["more_requests"]`, telling
  whether more requests already wait on the connection (pipelined): while draining, the
  response that says `connection: close` is the one to the last of them.

Deadlines are checked by one sweep a second over the open connections, so a request costs
two clock reads and no timer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from uvicorn._types import ASGISendEvent, HTTPResponseBodyEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from ledger.errors import error_body
from ledger.middleware.headers import SECURITY_HEADERS

log = logging.getLogger("ledger.http")

_SWEEP_SECONDS = 1.0
_LINGER_SECONDS = 1.0  # after a refusal at shutdown: read and discard, so no RST eats the answer
_HEALTH_PATHS = frozenset({b"/health/live", b"/health/ready"})


class _StopParsing(Exception):
    """Raised from a parser callback to stop parsing a request already refused."""


class Phase:
    """Where a connection is in its current request.

    Plain class attributes, compared with `is`: every request reads the phase several
    times, and an Enum member lookup costs five times as much (Python 3.11).
    """

    HEADERS = "headers"  # waiting for (the rest of) a request line and headers: idle
    BODY = "body"  # headers read, body still arriving
    APP = "app"  # request read, the application is answering


@dataclass(frozen=True)
class HttpLimits:
    """The bounds one ledger process puts on HTTP connections."""

    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 2048
    health_reserve: int = 16  # connections past the cap that may only ask /health/*


@dataclass
class Connections:
    """The open HTTP connections of one server, oldest first, and the sweep over them."""

    limits: HttpLimits
    on_closed: Callable[[str], None] = lambda _reason: None
    on_count: Callable[[int], None] = lambda _count: None
    open: dict[LedgerHttpProtocol, None] = field(default_factory=dict)
    reserve: dict[LedgerHttpProtocol, None] = field(default_factory=dict)
    _sweeper: asyncio.TimerHandle | None = None

    def add(self, connection: LedgerHttpProtocol, *, reserve: bool = False) -> None:
        """Count an accepted connection (in the health reserve: not against the cap)."""
        if reserve:
            self.reserve[connection] = None
        else:
            self.open[connection] = None
            self.on_count(len(self.open))
        if self._sweeper is None:
            self._sweeper = connection.loop.call_later(_SWEEP_SECONDS, self.sweep, connection.loop)

    def discard(self, connection: LedgerHttpProtocol) -> None:
        self.reserve.pop(connection, None)
        if self.open.pop(connection, 0) is None:
            self.on_count(len(self.open))

    def most_stalled(self) -> LedgerHttpProtocol | None:
        """The connection waiting longest for a request's headers or body, if any is waiting."""
        return min((c for c in self.open if c.evictable), key=lambda c: c.since, default=None)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close every connection past its header or body deadline."""
        now = loop.time()
        header_deadline = now - self.limits.header_timeout
        body_deadline = now - self.limits.body_timeout
        for connection in [*self.open, *self.reserve]:
            head_since = connection.head_since
            if connection.phase is Phase.HEADERS and head_since is not None and head_since < header_deadline:
                connection.time_out("header_timeout", "the request headers took too long to arrive")
            elif connection.phase is Phase.BODY and connection.since < body_deadline:
                connection.time_out("body_timeout", "the request body took too long to arrive")
        self._sweeper = (
            loop.call_later(_SWEEP_SECONDS, self.sweep, loop) if self.open or self.reserve else None
        )


# Response header lines checked once by uvicorn's rules and reused: the same few pairs (the
# security headers, x-served-by, content-type, uvicorn's date) start most responses, and
# checking each again costs more than the rest of a probe. Only these names are kept.
_REUSABLE_NAMES = frozenset(
    {name for name, _ in SECURITY_HEADERS} | {b"x-served-by", b"content-type", b"date", b"server"}
)
_REUSABLE_MAX = 256  # the date changes every second: start over rather than grow
_checked_lines: dict[tuple[bytes, bytes], bytes] = {}
# Header names checked once (lowercased): a line whose value differs per response (the
# request id, traceparent, content-length) still skips the name's check. Names are few.
_checked_names: dict[bytes, bytes] = {}


# The server's default headers (the date, and the process headers ledger configures) as
# lines, for the list uvicorn holds now: it builds a new one when the date changes.
_rendered_defaults: tuple[list[tuple[bytes, bytes]] | None, bytes] = (None, b"")
_MEANINGFUL_NAMES = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def _default_lines(defaults: list[tuple[bytes, bytes]]) -> bytes | None:
    """The lines of these default headers, checked by uvicorn's rules and rendered once per
    list; None when one of them means something to the server (left to each response)."""
    global _rendered_defaults
    rendered_for, lines = _rendered_defaults
    if rendered_for is defaults:
        return lines
    if any(name.lower() in _MEANINGFUL_NAMES for name, _ in defaults):
        return None
    for name, value in defaults:
        if HEADER_RE.search(name):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")
    lines = b"".join(b"%s: %s\r\n" % (name.lower(), value) for name, value in defaults)
    _rendered_defaults = (defaults, lines)  # holding the list: its id is never reused meanwhile
    return lines


class _Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle, writing a response head with the header lines it
    checked before reused (the same checks as uvicorn's for every other header).

    The head waits for the first body message and goes out in the same write (ASGI: the
    server must not start sending the response before a body event), so a small response
    costs one send, not two: the bulk of a probe's cost was these system calls.
    """

    _head: bytes | None = None  # a response head built but not written yet

    async def send(self, message: ASGISendEvent) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if message["type"] == "http.response.body" and self._send_with_head(head, message):
                return
            if not self.disconnected:
                self.transport.write(head)
        if (
            message["type"] != "http.response.start"
            or self.response_started
            or self.disconnected
            or self.access_log
            or self.flow.write_paused
        ):
            await super().send(message)
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
        defaults = _default_lines(self.default_headers)
        if defaults is None:  # a default header that means something to the server: per response
            defaults, pairs = b"", (*self.default_headers, *message.get("headers", ()))
        else:
            pairs = tuple(message.get("headers", ()))
        # Most lines are known; only the others (a request id, a length) are checked, in order.
        lines = [STATUS_LINE[status_code], defaults, *map(_checked_lines.get, pairs)]
        has_connection_close = False
        index = 1
        for _ in range(lines.count(None)):
            index = lines.index(None, index + 1)
            line, closes = self._checked_line(pairs[index - 2])
            lines[index] = line
            has_connection_close = has_connection_close or closes
        content: list[bytes] = lines  # type: ignore[assignment]  # no None is left
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status_code not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self._head = b"".join(content)

    def _checked_line(self, pair: tuple[bytes, bytes]) -> tuple[bytes, bool]:
        """A header line checked by uvicorn's rules, and whether it is `connection: close`;
        content-length, transfer-encoding and connection act on the cycle as in uvicorn."""
        name, value = pair
        checked_name = _checked_names.get(name)
        if checked_name is None:
            if HEADER_RE.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            checked_name = name.lower()
            if len(_checked_names) < _REUSABLE_MAX:
                _checked_names[name] = checked_name
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")
        name = checked_name
        closes = False
        if name == b"content-length" and self.chunked_encoding is None:
            self.expected_content_length = int(value.decode())
            self.chunked_encoding = False
        elif name == b"transfer-encoding" and value.lower() == b"chunked":
            self.expected_content_length = 0
            self.chunked_encoding = True
        elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
            self.keep_alive = False
            closes = True
        line = b"%s: %s\r\n" % (name, value)
        if name in _REUSABLE_NAMES:
            if len(_checked_lines) >= _REUSABLE_MAX:
                _checked_lines.clear()
            _checked_lines[pair] = line
        return line, closes

    def _send_with_head(self, head: bytes, message: HTTPResponseBodyEvent) -> bool:
        """Write the pending head with this body message, as uvicorn writes a body with a
        Content-Length; False (nothing written) for any other case, left to uvicorn."""
        if (
            self.chunked_encoding is not False
            or self.scope["method"] == "HEAD"
            or self.disconnected
            or self.flow.write_paused
        ):
            return False
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if len(body) > self.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        self.expected_content_length -= len(body)
        self.transport.write(head + body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
        return True


class LedgerHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header, timeout and connection limits and JSON refusals.

    Build a configured subclass with `protocol_class`: uvicorn takes a class, not an instance.
    """

    served_by: ClassVar[bytes] = b"unknown"
    registry: ClassVar[Connections] = Connections(HttpLimits())

    phase: str = Phase.HEADERS
    since: float = 0.0  # when the current wait began (connection open, headers, last response)
    # When the request's head began arriving (its first byte, or the connection opening);
    # None while idle between keep-alive requests. The header timeout counts from it.
    head_since: float | None = None
    _head_bytes: int = 0  # request line and headers (and trailers) parsed for this request
    _unparsed: int = 0  # bytes received since the parser last finished headers or body data
    _head_too_large: bool = False
    _health_only: bool = False  # admitted past the cap for the health probes
    _lingering: bool = False
    # The parser has begun a request whose headers are not complete: set by its first byte,
    # even when that byte came in the same read as the previous request (then _unparsed is 0).
    _head_begun: bool = False

    @property
    def evictable(self) -> bool:
        """Waiting on the client (for a request's headers or body), with no response under way."""
        cycle = self.cycle
        if self.phase is Phase.HEADERS:
            return cycle is None or cycle.response_complete
        return self.phase is Phase.BODY and cycle is not None and not cycle.response_started

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # ledger writes its own access log (ObserveMiddleware); uvicorn's would repeat it, and
        # would send every response down uvicorn's slower path (whenever its logger has a
        # handler, as under pytest's log capture).
        self.access_log = False
        self.phase, self.since = Phase.HEADERS, self.loop.time()
        self.head_since = self.since  # a new connection must send its first request in time
        connections = self.registry
        if len(connections.open) >= connections.limits.max_connections:
            victim = connections.most_stalled()
            if victim is None:
                if len(connections.reserve) >= connections.limits.health_reserve:
                    self._refuse_connection(503, "over_capacity", "the server is at its connection limit")
                    return
                self._health_only = True
                connections.add(self, reserve=True)
                return
            victim.evict()
        connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._head_too_large:
            return  # refused already: whatever the client still sends is discarded
        self._unparsed += len(data)
        if self.head_since is None and self.phase is Phase.HEADERS:
            self.head_since = self.loop.time()  # an idle keep-alive connection: a request begins
        super().data_received(data)
        if self._unparsed > self.registry.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse_head_too_large()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.registry.limits.max_header_bytes:
            self._stop_head_too_large()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_bytes > self.registry.limits.max_header_bytes:
            self._stop_head_too_large()
        super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        self._unparsed = 0
        super().on_body(body)

    def _stop_head_too_large(self) -> None:
        """The request line, headers and trailers parsed so far are past the limit (counted in
        on_url and on_header, inline: they run for every request): refuse, stop parsing."""
        self._refuse_head_too_large()
        raise _StopParsing  # httptools stops parsing; send_400_response sees the flag

    def _refuse_head_too_large(self) -> None:
        """431 now, or, while a response is under way on this connection, once it is sent."""
        self._head_too_large = True
        cycle = self.cycle
        owed = cycle is not None and not cycle.response_complete  # to an earlier request, or started
        if self.pipeline or (owed and (self.phase is Phase.APP or cycle.response_started)):
            self.flow.pause_reading()
            return
        self._refuse_connection(
            431,
            "request_header_fields_too_large",
            f"request line and headers must fit in {self.registry.limits.max_header_bytes} bytes",
        )

    def handle_websocket_upgrade(self) -> None:
        self.registry.discard(self)  # from here on the websocket protocol owns the transport
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        self._head_bytes, self._head_begun = 0, True
        super().on_message_begin()
        self.scope["extensions"] = {"ledger.connection": {"more_requests": self.more_requests}}

    def more_requests(self) -> bool:
        """Another request is queued on this connection, or part of one received: a response
        now that said `connection: close` would leave it unanswered."""
        return bool(self.pipeline) or (self.phase is Phase.APP and self._unparsed > 0)

    def on_headers_complete(self) -> None:
        self.phase, self.since, self._unparsed = Phase.BODY, self.loop.time(), 0
        self._head_begun = False
        self.head_since = None
        if self._health_only and self.url.partition(b"?")[0] not in _HEALTH_PATHS:
            self._refuse_connection(503, "over_capacity", "the server is at its connection limit")
            raise _StopParsing
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # the new cycle: it runs on the next loop turn
            self.cycle.__class__ = _Cycle
        if self._health_only and self.cycle is not None:
            self.cycle.keep_alive = False  # one probe per reserved place

    def on_message_complete(self) -> None:
        self.phase, self._unparsed = Phase.APP, 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if not self.pipeline and self.phase is Phase.APP:
            self.phase, self.since = Phase.HEADERS, self.loop.time()
            # Idle until the next request's first byte; part of it already here: timed now.
            self.head_since = self.since if self._unparsed or self._head_begun else None
        if self._head_too_large and not self.pipeline:
            self._head_too_large = False  # so the refusal below is written, not deferred again
            self._refuse_head_too_large()
        super().on_response_complete()

    def shutdown(self) -> None:
        """The listener closed: a request under way is answered (then `connection: close`);
        a connection with no request under way, even one half-received, is refused with 503
        and `connection: close` before anything is read, so nothing is dropped unanswered."""
        if self.cycle is not None and not self.cycle.response_complete:
            super().shutdown()
            return
        self._refuse_connection(
            503, "shutting_down", "the server is shutting down; retry", ((b"retry-after", b"0"),), linger=True
        )

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request: answer 400 as JSON and close (or, when a header
        limit stopped it, the 431 is written or deferred already)."""
        if self._head_too_large or self.transport.is_closing():
            return
        self._refuse_connection(400, "bad_request", "malformed HTTP request")

    def time_out(self, reason: str, message: str) -> None:
        """A deadline passed: 408 unless a response is already under way, then close."""
        cycle = self.cycle  # on a kept-alive connection: the previous request's, complete
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.registry.on_closed(reason)
            self.transport.close()
        else:
            self._refuse_connection(408, reason, message)

    def evict(self) -> None:
        """Closed to make room for a new connection while at the cap.

        With part of a request received, or after serving requests (the next may be on the
        wire), the client is told: 503, `retry-after`, `connection: close`. A connection that
        served requests lingers so the answer is not lost to a reset; one that never did (a
        slowloris) does not hold a descriptor for it.
        """
        if self.phase is Phase.HEADERS and self._unparsed == 0 and self.cycle is None:
            self.registry.on_closed("evicted")
            self.registry.discard(self)
            self.transport.close()
            return
        self._refuse_connection(
            503,
            "over_capacity",
            "the server is at its connection limit and this connection was the most stalled; retry",
            ((b"retry-after", b"1"),),
            linger=self.cycle is not None and self.phase is Phase.HEADERS,
            reason="evicted",
        )

    def _refuse_connection(
        self,
        status: int,
        code: str,
        message: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        *,
        linger: bool = False,
        reason: str | None = None,
    ) -> None:
        """Write a complete JSON error response outside any request cycle, then close.

        With `linger`, the write side closes first and what the client still sends is read
        and discarded until it closes (at most _LINGER_SECONDS): closing with unread data
        would reset the connection, and the reset can destroy the answer before it is read.
        `reason` is what the closed-connections metric counts, `code` by default.
        """
        self.registry.discard(self)
        if self.transport.is_closing():
            return
        self.registry.on_closed(reason or code)
        log.info("connection refused", extra={"status": status, "reason": code, "client": _peer(self.client)})
        body = error_body(code, message)
        head = [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            b"x-request-id: " + uuid.uuid4().hex.encode() + b"\r\n",
            b"x-served-by: " + self.served_by + b"\r\n",
        ]
        head += [name + b": " + value + b"\r\n" for name, value in (*SECURITY_HEADERS, *headers)]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        if linger and self.transport.can_write_eof():
            self._lingering = True
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown"


def protocol_class(served_by: str, connections: Connections) -> type[LedgerHttpProtocol]:
    """A LedgerHttpProtocol subclass configured for this process."""
    return type(
        "ConfiguredLedgerHttpProtocol",
        (LedgerHttpProtocol,),
        {"served_by": served_by.encode(), "registry": connections},
    )
