"""Token buckets and client addresses, with a fake clock: exact arithmetic, bounded memory;
then exemptions and client keys against a real `ledger serve`."""

from __future__ import annotations

import ipaddress
import tracemalloc

import httpx

from ledger.client_address import ClientAddress
from ledger.ratelimit import TokenBuckets
from tests.app.conftest import StartLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_instance_enforces_its_share_and_refills() -> None:
    clock, size = Clock(), [3]
    buckets = TokenBuckets(60, lambda: size[0], clock=clock)
    assert buckets.capacity == 20
    assert [buckets.take("a") for _ in range(20)] == [0.0] * 20
    assert buckets.take("a") == 3.0  # one token per 3 s at 20/minute
    clock.now += 3
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0  # another client, another bucket
    size[0] = 1000
    assert buckets.capacity == 1.0  # never below one per minute


def test_idle_buckets_are_evicted() -> None:
    clock = Clock()
    buckets = TokenBuckets(60, lambda: 1, clock=clock)
    for i in range(100):
        buckets.take(f"10.0.0.{i}")
    assert len(buckets) == 100
    clock.now += 120  # every bucket has refilled: keeping them would change nothing
    for i in range(60):
        buckets.take(f"10.1.0.{i}")
    assert len(buckets) <= 60 + 2


def test_a_flood_of_distinct_addresses_cannot_grow_memory_without_bound() -> None:
    clock = Clock()
    buckets = TokenBuckets(600, lambda: 1, max_clients=5_000, clock=clock)
    tracemalloc.start()
    try:
        for i in range(20_000):
            buckets.take(str(ipaddress.IPv4Address(0x0B000000 + i)))
        after_first = tracemalloc.get_traced_memory()[0]
        for i in range(20_000, 200_000):
            buckets.take(str(ipaddress.IPv4Address(0x0B000000 + i)))
        after_all = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(buckets) == 5_000
    assert after_all < after_first * 1.5, (after_first, after_all)


def scope(peer: str, forwarded: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    resolve = ClientAddress([ipaddress.ip_network("10.0.0.0/8")])
    assert resolve(scope("203.0.113.9", "1.2.3.4")) == "203.0.113.9"  # untrusted peer: ignored
    assert resolve(scope("10.0.0.5", "1.2.3.4")) == "1.2.3.4"
    # The client may prepend anything; the rightmost untrusted hop is who reached our proxy.
    assert resolve(scope("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.7")) == "1.2.3.4"
    assert resolve(scope("10.0.0.5", "not-an-ip")) == "10.0.0.5"
    assert resolve(scope("10.0.0.5")) == "10.0.0.5"
    assert ClientAddress([])(scope("10.0.0.5", "1.2.3.4")) == "10.0.0.5"


SPELLINGS = [  # one IPv6 client, 12 ways
    "2001:db8::1",
    "2001:DB8::1",
    "2001:0db8::1",
    "2001:db8:0::1",
    "2001:db8:0:0::1",
    "2001:db8:0:0:0::1",
    "2001:db8:0:0:0:0::1",
    "2001:db8:0:0:0:0:0:1",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "2001:db8::0:1",
    "2001:db8::0001",
    "2001:db8:0000::0:1",
]


def test_forwarded_addresses_are_normalised_and_ipv6_is_keyed_per_64() -> None:
    resolve = ClientAddress([ipaddress.ip_network("10.0.0.0/8")])
    assert {resolve(scope("10.0.0.5", s)) for s in SPELLINGS} == {"2001:db8::1"}
    assert {resolve.key(scope("10.0.0.5", s)) for s in SPELLINGS} == {"2001:db8::/64"}
    assert resolve.key(scope("10.0.0.5", "2001:db8::ffff:1")) == "2001:db8::/64"  # same /64
    assert resolve.key(scope("10.0.0.5", "2001:db8:0:1::1")) == "2001:db8:0:1::/64"  # the next one
    assert resolve(scope("10.0.0.5", "::ffff:192.0.2.7")) == "192.0.2.7"  # IPv4-mapped
    assert resolve.key(scope("10.0.0.5", "192.0.2.7")) == "192.0.2.7"
    assert resolve(scope("::ffff:10.0.0.5", "192.0.2.8")) == "192.0.2.8"  # a mapped proxy is trusted


def test_exemptions_match_exact_paths_only_against_a_real_server(start_ledger: StartLedger) -> None:
    process = start_ledger(RATE_LIMIT_PER_MINUTE="3")
    with httpx.Client(base_url=process.url) as http:
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert {http.get(path).status_code for _ in range(10)} == {200}
        statuses = [http.get(path).status_code for path in ["/health/nonexistent", "/metricsfoo"] * 3]
        assert statuses[:3] == [404, 404, 404] and set(statuses[3:]) == {429}, statuses


def test_one_ipv6_client_written_12_ways_gets_one_bucket_against_a_real_server(
    start_ledger: StartLedger,
) -> None:
    process = start_ledger(RATE_LIMIT_PER_MINUTE="3", TRUSTED_PROXIES="127.0.0.1")
    with httpx.Client(base_url=process.url) as http:
        statuses = [http.get("/cluster", headers={"x-forwarded-for": s}).status_code for s in SPELLINGS]
        assert statuses.count(200) == 3 and statuses.count(429) == 9, statuses
        neighbour = http.get("/cluster", headers={"x-forwarded-for": "2001:db8::beef"})
        assert neighbour.status_code == 429  # the same /64
        elsewhere = http.get("/cluster", headers={"x-forwarded-for": "2001:db8:1::1"})
        assert elsewhere.status_code == 200
