"""W3C Trace Context (https://www.w3.org/TR/trace-context/): `traceparent` in and out.

Every HTTP request gets a span of its own (8 random bytes). An incoming `traceparent` that
parses is continued (same trace id and flags, its parent id recorded as this span's
parent); a missing or malformed one starts a new trace, so garbage is never echoed. A
`tracestate` is kept (and returned) only with a valid `traceparent`, only when it parses,
and only within the spec's bounds (32 members, 512 characters); otherwise it is dropped.

The context goes into `scope["state"]["trace"]` and into `current_trace`, which the log
formatters read: every record emitted while the request runs, the access log line
included, carries `trace_id` and `span_id`. Each response carries `traceparent` (this
span as parent id) and the kept `tracestate`, so a client can correlate its call with
ledger's logs.

ledger makes no outgoing HTTP calls on behalf of a request (the cluster's peer probes run
in a background task started at start-up), so there is nothing to propagate downstream.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.entropy import random_bytes

MAX_TRACESTATE_MEMBERS = 32
MAX_TRACESTATE_CHARS = 512
_NEW_TRACE_FLAGS = "00"  # ledger records no spans itself: it does not claim a sampled trace

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_OWS = " \t"
# list-member = key "=" value; key: simple or multi-tenant (tenant@system); value: printable
# ASCII without "," and "=", not ending in a space (trace-context-1, section 3.3.1.3).
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


class TraceContext(NamedTuple):
    """This request's place in a trace."""

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex: this server's span for the request
    parent_id: str  # the caller's span ("" when this request started the trace)
    flags: str  # 2 lowercase hex
    tracestate: str = ""  # as received (validated and bounded), "" for none

    def traceparent(self) -> str:
        """The header value naming this span as the parent (version 00)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


current_trace: ContextVar[TraceContext | None] = ContextVar("ledger_trace", default=None)


def _is_hex(text: str, zero: str) -> bool:
    return len(text) == len(zero) and text != zero and _HEX.issuperset(text)


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """`(trace_id, parent_id, flags)` from a `traceparent` value, or None if it is invalid.

    Version 00 must be exactly `00-<32 hex>-<16 hex>-<2 hex>` (lowercase, ids not all zero).
    A later version (not ff) is read leniently as the spec asks: at least 55 characters,
    the same first three fields, and the flags followed by the end or a dash; only the
    sampled bit of its flags is kept, as its other bits may mean something else.
    """
    value = value.strip(_OWS)
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_id, parent_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if version == "ff" or not _HEX.issuperset(version) or not _HEX.issuperset(flags):
        return None
    if not _is_hex(trace_id, _ZERO_TRACE) or not _is_hex(parent_id, _ZERO_SPAN):
        return None
    if version == "00":
        return (trace_id, parent_id, flags) if len(value) == 55 else None
    if len(value) > 55 and value[55] != "-":
        return None
    return trace_id, parent_id, "01" if int(flags, 16) & 1 else "00"


def parse_tracestate(values: list[str]) -> str:
    """The `tracestate` to keep from its header values ("" to drop it).

    Several headers are one comma-separated list. Empty members and whitespace around
    members are dropped; a malformed member, a repeated key, more than 32 members or a
    result longer than 512 characters drops the whole header, as the spec allows.
    """
    members = [m.strip(_OWS) for value in values for m in value.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return ""
    keys = set()
    for member in members:
        if not _TRACESTATE_MEMBER.fullmatch(member):
            return ""
        keys.add(member.partition("=")[0])
    joined = ",".join(members)
    if len(keys) != len(members) or len(joined) > MAX_TRACESTATE_CHARS:
        return ""
    return joined


def trace_context(traceparent: list[str], tracestate: list[str], random_bytes: bytes) -> TraceContext:
    """The context for a request with these header values; `random_bytes` (24) supply the
    span id (first 8) and, for a new trace, the trace id (last 16).

    More than one `traceparent` header is invalid (which one would be the parent?).
    """
    entropy = random_bytes.hex()
    span_id = entropy[:16]
    parsed = parse_traceparent(traceparent[0]) if len(traceparent) == 1 else None
    if parsed is None:
        return TraceContext(entropy[16:48], span_id, "", _NEW_TRACE_FLAGS)
    trace_id, parent_id, flags = parsed
    return TraceContext(
        trace_id, span_id, parent_id, flags, parse_tracestate(tracestate) if tracestate else ""
    )


def trace_headers(scope: Scope) -> tuple[list[str], list[str]]:
    """The request's `traceparent` and `tracestate` header values, in order."""
    traceparent: list[str] = []
    tracestate: list[str] = []
    for name, value in scope["headers"]:
        if name == b"traceparent":
            traceparent.append(value.decode("latin-1"))
        elif name == b"tracestate":
            tracestate.append(value.decode("latin-1"))
    return traceparent, tracestate


def start_trace(scope: Scope) -> tuple[TraceContext, list[tuple[bytes, bytes]]]:
    """This request's trace context (kept in scope state) and the response headers it gives."""
    trace = trace_context(*trace_headers(scope), random_bytes(24))
    scope.setdefault("state", {})["trace"] = trace
    return trace, response_headers(trace)


def response_headers(trace: TraceContext) -> list[tuple[bytes, bytes]]:
    """`traceparent` naming this span, and the kept `tracestate` if any."""
    if trace.tracestate:
        return [(b"traceparent", trace.traceparent().encode()), (b"tracestate", trace.tracestate.encode())]
    return [(b"traceparent", trace.traceparent().encode())]


class TracingMiddleware:
    """Gives each HTTP request a trace context and returns `traceparent` on its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace, headers = start_trace(scope)

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        token = current_trace.set(trace)
        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            current_trace.reset(token)
