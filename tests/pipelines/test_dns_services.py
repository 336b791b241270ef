"""The weighted DNS server for several services of one zone: each name answered from its
own weighted records (one read of the zone), counted per name; `answers` stays the first's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from cutover.local.aws import ZoneLayout
from cutover.local.dns import WeightedDnsServer

ALBS = {
    "blue": "cutover-blue-0.eu-west-1.elb.amazonaws.com.",
    "green": "cutover-green-1.eu-west-1.elb.amazonaws.com.",
}
ADDRESSES = {ALBS["blue"]: "127.0.0.2", ALBS["green"]: "127.0.0.3"}
LEDGER = ZoneLayout(record_name="ledger.example.com.", alias_targets=ALBS)  # type: ignore[arg-type]
GREETER = ZoneLayout(record_name="greeter.example.com.", alias_targets=ALBS)  # type: ignore[arg-type]


def addresses(server: WeightedDnsServer, name: str, times: int) -> list[str]:
    found = []
    for _ in range(times):
        reply = DNSRecord.parse(DNSRecord.question(name, "A").send("127.0.0.1", server.port, timeout=5))
        assert reply.header.rcode == RCODE.NOERROR, (name, reply)
        found += [str(r.rdata) for r in reply.rr if r.rtype == QTYPE.A and str(r.rname) == name]
    return found


@pytest.fixture
def records() -> list[dict[str, Any]]:
    """ledger all on blue, greeter all on green: the same two ALBs behind both names."""
    return [
        LEDGER.weighted("blue", 100),
        LEDGER.weighted("green", 0),
        LEDGER.generation(3),
        GREETER.weighted("blue", 0),
        GREETER.weighted("green", 100),
        GREETER.generation(0),
    ]


@pytest.fixture
def server(records: list[dict[str, Any]]) -> Iterator[WeightedDnsServer]:
    dns = WeightedDnsServer(
        LEDGER.record_name,
        lambda: records,
        ADDRESSES,
        4,
        more_names=[GREETER.record_name],
        refresh_seconds=0.05,
    )
    dns.start()
    try:
        yield dns
    finally:
        dns.stop()


def test_each_name_is_answered_from_its_own_records(server: WeightedDnsServer) -> None:
    assert addresses(server, "ledger.example.com.", 10) == ["127.0.0.2"] * 10
    assert addresses(server, "greeter.example.com.", 10) == ["127.0.0.3"] * 10
    assert server.answers == {"blue": 10}  # ledger's, as before
    assert server.answers_by_name == {
        "ledger.example.com.": {"blue": 10},
        "greeter.example.com.": {"green": 10},
    }
    # another name of the zone is still NXDOMAIN
    reply = DNSRecord.parse(
        DNSRecord.question("other.example.com.", "A").send("127.0.0.1", server.port, timeout=5)
    )
    assert reply.header.rcode == RCODE.NXDOMAIN


def test_a_change_to_one_name_leaves_the_other_alone(
    server: WeightedDnsServer, records: list[dict[str, Any]]
) -> None:
    records[3:5] = [GREETER.weighted("blue", 100), GREETER.weighted("green", 0)]
    server.refresh()
    assert addresses(server, "greeter.example.com.", 5) == ["127.0.0.2"] * 5
    assert addresses(server, "ledger.example.com.", 5) == ["127.0.0.2"] * 5
    assert server.choose("greeter.example.com") is not None and server.choose() is not None


def test_a_name_outside_the_zone_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a name of the zone example\.com"):
        WeightedDnsServer("ledger.example.com.", list, ADDRESSES, 4, more_names=["greeter.example.org."])
