"""The load clients' caching resolver against the real weighted DNS server (UDP on 127.0.0.1),
with a fake clock for the cache."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from cutover.local.dns import WeightedDnsServer
from cutover.rehearsal.resolver import STALE_TTL, CachingResolver, Resolved, ResolveError
from tests.pipelines.conftest import ALB, RECORD, weighted

ADDRESSES = {ALB["blue"]: "127.0.0.2", ALB["green"]: "127.0.0.3"}
BLUE, GREEN = "127.0.0.2", "127.0.0.3"
TTL = 60
START = 1000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Zone:
    """The records the DNS server reads, set by the test; `route` rereads them at once."""

    def __init__(self) -> None:
        self.records = [weighted("blue", 100), weighted("green", 0)]
        self.server = WeightedDnsServer(RECORD, lambda: self.records, ADDRESSES, TTL, refresh_seconds=3600)

    def route(self, blue: int, green: int) -> None:
        self.records = [weighted("blue", blue), weighted("green", green)]
        self.server.refresh()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.port)


@pytest.fixture
def zone() -> Iterator[Zone]:
    zone = Zone()
    zone.server.start()
    yield zone
    zone.server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def silent() -> Iterator[tuple[str, int]]:
    """A UDP port that takes queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


def test_the_answer_is_kept_for_its_ttl_and_no_longer(zone: Zone, clock: Clock) -> None:
    resolver = CachingResolver(zone.address, RECORD, clock=clock)
    first = resolver.resolve()
    assert first == Resolved(BLUE, TTL, START, START + TTL, stale=False)
    assert resolver.lookups == 1

    zone.route(blue=0, green=100)
    clock.now = START + TTL - 0.01
    assert resolver.resolve() == first
    assert resolver.lookups == 1
    assert sum(zone.server.answers.values()) == 1  # no query reached the server

    clock.now = START + TTL
    assert resolver.resolve() == Resolved(GREEN, TTL, START + TTL, START + 2 * TTL, stale=False)
    assert resolver.lookups == 2
    assert zone.server.answers == {"blue": 1, "green": 1}


def test_a_hold_factor_keeps_answers_that_many_times_longer(zone: Zone, clock: Clock) -> None:
    resolver = CachingResolver(zone.address, RECORD.rstrip("."), hold_factor=3, clock=clock)
    assert resolver.resolve().expires_at == START + 3 * TTL
    zone.route(blue=0, green=100)

    clock.now = START + 3 * TTL - 0.01
    assert resolver.resolve().address == BLUE
    assert resolver.lookups == 1
    clock.now = START + 3 * TTL
    assert resolver.resolve().address == GREEN
    assert resolver.lookups == 2


def test_after_the_server_stops_the_last_answer_is_served_stale(zone: Zone, clock: Clock) -> None:
    resolver = CachingResolver(zone.address, RECORD, clock=clock, timeout=0.5)
    resolver.resolve()
    port = zone.server.port
    zone.server.stop()

    clock.now = START + TTL
    stale = resolver.resolve()
    assert stale == Resolved(BLUE, TTL, START, START + TTL + STALE_TTL, stale=True)
    failed_lookup = resolver.attempts  # each attempt unanswered (the port is closed)
    assert resolver.lookups == 1 + failed_lookup

    clock.now = START + TTL + STALE_TTL - 0.01
    assert resolver.resolve() == stale  # no new attempt before the recheck time
    assert resolver.lookups == 1 + failed_lookup

    back = WeightedDnsServer(RECORD, lambda: [weighted("green", 1)], ADDRESSES, TTL, port=port)
    back.start()
    try:
        clock.now = START + TTL + STALE_TTL
        assert resolver.resolve() == Resolved(GREEN, TTL, clock.now, clock.now + TTL, stale=False)
        assert resolver.lookups == 2 + failed_lookup
    finally:
        back.stop()


def test_a_negative_answer_serves_the_last_answer_stale(zone: Zone, clock: Clock) -> None:
    resolver = CachingResolver(zone.address, RECORD, clock=clock)
    resolver.resolve()
    zone.records = []
    zone.server.refresh()

    clock.now = START + TTL
    resolved = resolver.resolve()
    assert (resolved.address, resolved.stale) == (BLUE, True)
    assert resolver.lookups == 2


def test_without_an_earlier_answer_a_failed_lookup_raises(zone: Zone, silent: tuple[str, int]) -> None:
    refused = CachingResolver(zone.address, "ledger.example.org.")
    with pytest.raises(
        ResolveError, match=r"cannot resolve ledger\.example\.org\. via 127\.0\.0\.1:\d+: .*REFUSED"
    ):
        refused.resolve()

    nxdomain = CachingResolver(zone.address, "missing.example.com")
    with pytest.raises(ResolveError, match="NXDOMAIN"):
        nxdomain.resolve()

    unanswered = CachingResolver(silent, RECORD, timeout=0.2)
    with pytest.raises(ResolveError, match=r"no answer within 0\.2 s"):
        unanswered.resolve()

    zone.server.stop()
    closed = CachingResolver(zone.address, RECORD)
    with pytest.raises(ResolveError, match="ConnectionRefusedError"):
        closed.resolve()
    # An answer, even a refusal, is final; a query nobody answered is sent again, as a stub
    # resolver does (resolv.conf's `attempts`).
    assert (refused.lookups, nxdomain.lookups) == (1, 1)
    assert unanswered.lookups == closed.lookups == unanswered.attempts == 3


class Impostor:
    """A UDP server that first answers each query with a wrong id (and a wrong address), then
    with the right one, as a late answer to an earlier query or a spoofer would."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Impostor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            request = DNSRecord.parse(data)
            wrong = request.reply()
            wrong.header.id = (request.header.id + 1) % 65536
            wrong.add_answer(RR(RECORD, QTYPE.A, rdata=A("127.0.0.9"), ttl=5))
            right = request.reply()
            right.add_answer(RR(RECORD, QTYPE.A, rdata=A(BLUE), ttl=5))
            self.sock.sendto(wrong.pack(), client)
            self.sock.sendto(right.pack(), client)


def test_an_answer_with_another_id_is_ignored() -> None:
    with Impostor() as impostor:
        assert CachingResolver(impostor.address, RECORD).resolve().address == BLUE

        async def resolve() -> Resolved:
            return await CachingResolver(impostor.address, RECORD).resolve_async()

        assert asyncio.run(resolve()).address == BLUE


def test_concurrent_async_lookups_share_one_query(zone: Zone, clock: Clock) -> None:
    resolver = CachingResolver(zone.address, RECORD, clock=clock)

    async def main() -> list[Resolved]:
        return await asyncio.gather(*(resolver.resolve_async() for _ in range(50)))

    results = asyncio.run(main())
    assert {result.address for result in results} == {BLUE}
    assert resolver.lookups == 1
    assert zone.server.answers == {"blue": 1}


def test_many_async_resolvers_resolve_concurrently(zone: Zone) -> None:
    resolvers = [CachingResolver(zone.address, RECORD) for _ in range(50)]

    async def main() -> list[Resolved]:
        return await asyncio.gather(*(resolver.resolve_async() for resolver in resolvers))

    results = asyncio.run(main())
    assert [result.address for result in results] == [BLUE] * 50
    assert [resolver.lookups for resolver in resolvers] == [1] * 50
    assert zone.server.answers == {"blue": 50}


def test_an_async_lookup_does_not_block_the_loop(zone: Zone, clock: Clock, silent: tuple[str, int]) -> None:
    async def main() -> tuple[int, Resolved, Resolved]:
        ticks = 0
        done = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker counts its first tick
        ticks = 0
        resolver = CachingResolver(zone.address, RECORD, clock=clock)
        fresh = await resolver.resolve_async()
        resolver.server = silent  # the next lookup gets no answer
        resolver.timeout = 0.3
        clock.now = START + TTL
        stale = await resolver.resolve_async()
        done.set()
        await ticker
        return ticks, fresh, stale

    ticks, fresh, stale = asyncio.run(main())
    assert (fresh.address, fresh.stale) == (BLUE, False)
    assert (stale.address, stale.stale) == (BLUE, True)
    assert ticks > 0  # the loop ran other tasks while the lookup waited


def test_a_lost_query_is_sent_again_before_the_lookup_fails(zone: Zone) -> None:
    """A busy or lossy path drops a query now and then: the resolver sends it again (a new
    id) instead of failing the client's request on the first silence."""
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.1", 0))
    relay.settimeout(5)
    dropped: list[bytes] = []

    def drop_the_first_then_relay() -> None:
        query, client = relay.recvfrom(4096)
        dropped.append(query)  # lost
        query, client = relay.recvfrom(4096)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(5)
            upstream.sendto(query, zone.address)
            relay.sendto(upstream.recv(4096), client)

    thread = threading.Thread(target=drop_the_first_then_relay, daemon=True)
    thread.start()
    try:
        resolver = CachingResolver(relay.getsockname(), RECORD, timeout=0.3)
        assert resolver.resolve().address == BLUE
        assert resolver.lookups == 2 and len(dropped) == 1
    finally:
        thread.join(5)
        relay.close()
