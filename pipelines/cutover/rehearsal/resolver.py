"""A load client's view of DNS: a stub resolver with a cache, as an OS or a browser keeps one.

It asks one server for one name's A record over UDP, keeps the answer for its TTL (or
`hold_factor` times longer, as some clients do), and when a lookup fails it serves the last
answer stale (RFC 8767): marked `stale`, reused for STALE_TTL seconds before it tries again
(RFC 8767's recommended stale TTL and failure recheck time).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

from dnslib import QTYPE, RCODE, DNSError, DNSRecord

__all__ = ["STALE_TTL", "CachingResolver", "ResolveError", "Resolved"]

STALE_TTL = 30.0
MAX_PACKET = 65535


@dataclass(frozen=True)
class Resolved:
    """An address for the name, and until when the cache answers with it."""

    address: str
    ttl: int  # as the server sent it
    resolved_at: float  # clock time of the lookup that got it
    expires_at: float  # the cache answers with it until then, without asking the server
    stale: bool  # served after a failed lookup


class ResolveError(RuntimeError):
    """The lookup failed and there is no earlier answer to serve instead."""


class _LookupFailed(Exception):
    """One query without a usable answer (the reason is the message)."""


class CachingResolver:
    """One client's stub resolver with a cache, as an OS or browser keeps one: honours the TTL, or with
    hold_factor > 1 keeps answers that many times longer, as some clients do."""

    def __init__(
        self,
        server: tuple[str, int],
        name: str,
        *,
        hold_factor: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 2.0,
        attempts: int = 3,
    ) -> None:
        if hold_factor < 0:
            raise ValueError(f"hold_factor must be 0 or more, not {hold_factor}")
        self.server = server
        self.name = name.rstrip(".") + "."
        self.hold_factor = hold_factor
        self.timeout = timeout  # per query; a query without an answer is sent again,
        self.attempts = attempts  # up to this many times, as a stub resolver does (resolv.conf)
        self.lookups = 0
        self._clock = clock
        self._cache: Resolved | None = None
        self._state = threading.Lock()  # held briefly, never across I/O
        self._sync_lookup = threading.Lock()  # one blocking lookup at a time
        self._async_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def resolve(self) -> Resolved:
        """The cached answer while valid, else a new lookup (blocking)."""
        cached = self._valid()
        if cached is not None:
            return cached
        with self._sync_lookup:
            cached = self._valid()  # another thread may have looked it up meanwhile
            if cached is not None:
                return cached
            failure = _LookupFailed("no attempt")
            for _ in range(self.attempts):
                query = self._query()
                try:
                    reply = self._exchange(query)
                except _LookupFailed as lost:
                    failure = lost
                    continue
                try:
                    return self._store(query, reply)
                except _LookupFailed as refused:  # an answer, if not a usable one: final
                    return self._failed(str(refused))
            return self._failed(str(failure))

    async def resolve_async(self) -> Resolved:
        """As resolve, without blocking the event loop; concurrent callers share one lookup."""
        cached = self._valid()
        if cached is not None:
            return cached
        async with self._async_lock():
            cached = self._valid()
            if cached is not None:
                return cached
            failure = _LookupFailed("no attempt")
            for _ in range(self.attempts):
                query = self._query()
                try:
                    reply = await self._exchange_async(query)
                except _LookupFailed as lost:
                    failure = lost
                    continue
                try:
                    return self._store(query, reply)
                except _LookupFailed as refused:  # an answer, if not a usable one: final
                    return self._failed(str(refused))
            return self._failed(str(failure))

    def _valid(self) -> Resolved | None:
        with self._state:
            if self._cache is not None and self._clock() < self._cache.expires_at:
                return self._cache
            return None

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._state:
            lock = self._async_lookups.get(loop)
            if lock is None:
                lock = self._async_lookups[loop] = asyncio.Lock()
            return lock

    def _query(self) -> DNSRecord:
        with self._state:
            self.lookups += 1
        return DNSRecord.question(self.name, "A")

    def _socket(self) -> socket.socket:
        """A UDP socket connected to the server: replies from elsewhere never reach it, and a
        closed server port shows as ConnectionRefusedError instead of a timeout."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect(self.server)
        except OSError:
            sock.close()
            raise
        return sock

    def _exchange(self, query: DNSRecord) -> DNSRecord:
        deadline = time.monotonic() + self.timeout
        try:
            with self._socket() as sock:
                sock.send(query.pack())
                while (remaining := deadline - time.monotonic()) > 0:
                    sock.settimeout(remaining)
                    reply = _reply_to(query, sock.recv(MAX_PACKET))
                    if reply is not None:
                        return reply
        except TimeoutError:
            pass
        except OSError as error:
            raise _LookupFailed(f"{type(error).__name__}: {error}") from error
        raise _LookupFailed(f"no answer within {self.timeout:g} s")

    async def _exchange_async(self, query: DNSRecord) -> DNSRecord:
        loop = asyncio.get_running_loop()
        try:
            with self._socket() as sock:
                sock.setblocking(False)
                async with asyncio.timeout(self.timeout):
                    await loop.sock_sendall(sock, query.pack())
                    while True:
                        reply = _reply_to(query, await loop.sock_recv(sock, MAX_PACKET))
                        if reply is not None:
                            return reply
        except TimeoutError as error:
            raise _LookupFailed(f"no answer within {self.timeout:g} s") from error
        except OSError as error:
            raise _LookupFailed(f"{type(error).__name__}: {error}") from error

    def _store(self, query: DNSRecord, reply: DNSRecord) -> Resolved:
        address, ttl = _address(query, reply)
        with self._state:
            now = self._clock()
            self._cache = Resolved(address, ttl, now, now + ttl * self.hold_factor, stale=False)
            return self._cache

    def _failed(self, reason: str) -> Resolved:
        with self._state:
            if self._cache is None:
                host, port = self.server
                raise ResolveError(f"cannot resolve {self.name} via {host}:{port}: {reason}")
            self._cache = replace(self._cache, expires_at=self._clock() + STALE_TTL, stale=True)
            return self._cache


def _reply_to(query: DNSRecord, data: bytes) -> DNSRecord | None:
    """The packet parsed when it answers this query (same id and question), else None."""
    try:
        reply = DNSRecord.parse(data)
    except DNSError:
        return None
    if reply.header.id != query.header.id or not reply.header.qr:
        return None
    if not reply.questions or reply.q.qtype != query.q.qtype or reply.q.qname != query.q.qname:
        return None
    return reply


def _address(query: DNSRecord, reply: DNSRecord) -> tuple[str, int]:
    """The first A record for the name, and its TTL."""
    if reply.header.rcode != RCODE.NOERROR:
        raise _LookupFailed(f"the server answered {RCODE[reply.header.rcode]}")
    if reply.header.tc:
        raise _LookupFailed("the answer was truncated")
    for record in reply.rr:
        if record.rtype == QTYPE.A and record.rname == query.q.qname:
            return str(record.rdata), int(record.ttl)
    raise _LookupFailed("the answer holds no A record")
