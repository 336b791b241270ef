"""The weighted DNS server: real UDP/TCP queries to it, answering from records read from a
strict moto Route53 (or from boto3-shaped records held in the test)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from dnslib import QTYPE, RCODE, DNSRecord

from cutover.local.dns import Answer, WeightedDnsServer
from tests.pipelines.cli_env import _keys
from tests.pipelines.conftest import ALB, RECORD, MotoServer, create_zone, snapshot, weighted

ADDRESSES = {ALB["blue"]: "127.0.0.2", ALB["green"].upper().rstrip("."): "127.0.0.3"}  # any spelling
ALIAS_TTL = 60
Records = list[dict[str, Any]]
Serve = Callable[..., WeightedDnsServer]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


def query(server: WeightedDnsServer, name: str = RECORD, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    packet = DNSRecord.question(name, qtype).send("127.0.0.1", server.port, tcp=tcp, timeout=5)
    return DNSRecord.parse(packet)


def addresses_in(reply: DNSRecord) -> list[str]:
    return [str(record.rdata) for record in reply.rr if record.rtype == QTYPE.A]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts WeightedDnsServers for RECORD; every one is stopped at the end."""
    servers: list[WeightedDnsServer] = []

    def start(read_records: Callable[[], Records], **options: Any) -> WeightedDnsServer:
        server = WeightedDnsServer(RECORD, read_records, ADDRESSES, ALIAS_TTL, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_zone(moto_server: MotoServer) -> tuple[Any, str]:
    """A Route53 client (no retries: a down endpoint fails at once) and the zone, blue 100 green 0."""
    client = boto3.client(
        "route53",
        endpoint_url=moto_server.endpoint,
        region_name="eu-west-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5),
        **_keys(),
    )
    return client, create_zone(client, blue=100, green=0)


def reader(client: Any, zone: str) -> Callable[[], Records]:
    return lambda: list(client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"])


def shift(client: Any, zone: str, blue: int, green: int) -> None:
    """The atomic swap cutover makes: DELETE each live record, CREATE it with the new weight."""
    live = {record["SetIdentifier"]: record for record in snapshot(client, zone) if "SetIdentifier" in record}
    changes = []
    for color, weight in (("blue", blue), ("green", green)):
        changes += [
            {"Action": "DELETE", "ResourceRecordSet": live[color]},
            {"Action": "CREATE", "ResourceRecordSet": {**live[color], "Weight": weight}},
        ]
    client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})


def choices(server: WeightedDnsServer, n: int) -> Counter[str]:
    picks: Counter[str] = Counter()
    for _ in range(n):
        answer = server.choose()
        assert answer is not None
        picks[answer.set_identifier] += 1
    return picks


def test_choices_follow_the_weights(serve: Serve) -> None:
    server = serve(lambda: [weighted("blue", 90), weighted("green", 10)], seed=7)
    picks = choices(server, 2000)
    # Binomial(2000, 0.1): mean 200, standard deviation 13.4; +-60 is 4.5 deviations.
    assert 140 <= picks["green"] <= 260, picks
    assert picks["blue"] + picks["green"] == 2000


def test_answers_over_udp_follow_the_weights_and_are_counted(serve: Serve) -> None:
    server = serve(lambda: [weighted("blue", 128), weighted("green", 128)], seed=11)
    seen = Counter(addresses_in(query(server))[0] for _ in range(300))
    # Binomial(300, 0.5): standard deviation 8.7; +-50 is 5.8 deviations.
    assert 100 <= seen["127.0.0.2"] <= 200, seen
    assert server.answers == Counter(blue=seen["127.0.0.2"], green=seen["127.0.0.3"])


def test_a_weight_0_record_gets_no_answers(serve: Serve) -> None:
    server = serve(lambda: [weighted("blue", 255), weighted("green", 0)], seed=1)
    assert choices(server, 1000) == Counter(blue=1000)
    assert {addresses_in(query(server))[0] for _ in range(50)} == {"127.0.0.2"}


def test_when_every_weight_is_0_each_record_gets_an_equal_share(serve: Serve) -> None:
    server = serve(lambda: [weighted("blue", 0), weighted("green", 0)], seed=3)
    picks = choices(server, 2000)
    # Binomial(2000, 0.5): standard deviation 22.4; +-100 is 4.5 deviations.
    assert 900 <= picks["green"] <= 1100, picks


def test_an_alias_answer_carries_the_alias_targets_ttl(serve: Serve, live_zone: tuple[Any, str]) -> None:
    server = serve(reader(*live_zone))
    for tcp in (False, True):
        reply = query(server, tcp=tcp)
        assert reply.header.rcode == RCODE.NOERROR
        assert reply.header.aa == 1
        assert [(str(rr.rname), str(rr.rdata), rr.ttl) for rr in reply.rr] == [
            (RECORD, "127.0.0.2", ALIAS_TTL)
        ]
    assert server.choose() == Answer("127.0.0.2", ALIAS_TTL, "blue")


def test_a_non_alias_record_answers_with_its_own_ttl_and_first_value(serve: Serve) -> None:
    plain = {
        "Name": RECORD.upper(),  # names compare without case
        "Type": "A",
        "SetIdentifier": "green",
        "Weight": 1,
        "TTL": 15,
        "ResourceRecords": [{"Value": "127.0.0.4"}, {"Value": "127.0.0.5"}],
    }
    server = serve(lambda: [weighted("blue", 0), plain])
    reply = query(server)
    assert [(str(rr.rdata), rr.ttl) for rr in reply.rr] == [("127.0.0.4", 15)]
    assert reply.header.aa == 1


def test_other_names_and_types(serve: Serve, live_zone: tuple[Any, str]) -> None:
    server = serve(reader(*live_zone))

    elsewhere = query(server, "ledger.example.org.")
    assert (elsewhere.header.rcode, elsewhere.rr, elsewhere.auth) == (RCODE.REFUSED, [], [])

    missing = query(server, "nothing.example.com.")
    assert (missing.header.rcode, missing.rr) == (RCODE.NXDOMAIN, [])
    assert [QTYPE[rr.rtype] for rr in missing.auth] == ["SOA"]  # for negative caching

    for name, qtype in ((RECORD, "AAAA"), (RECORD, "TXT"), ("example.com.", "A")):
        empty = query(server, name, qtype)
        assert (empty.header.rcode, empty.rr) == (RCODE.NOERROR, []), (name, qtype)
        assert [QTYPE[rr.rtype] for rr in empty.auth] == ["SOA"]

    for reply in (elsewhere, missing, empty):
        assert reply.header.aa == 1
    assert server.answers == Counter()  # none of these was an answer for RECORD


def test_a_change_in_the_records_shows_after_a_refresh(serve: Serve, live_zone: tuple[Any, str]) -> None:
    client, zone = live_zone
    server = serve(reader(client, zone), refresh_seconds=3600)  # no background refresh in this test
    assert addresses_in(query(server)) == ["127.0.0.2"]

    shift(client, zone, blue=0, green=100)
    assert addresses_in(query(server)) == ["127.0.0.2"]  # still the records it read
    server.refresh()
    assert addresses_in(query(server)) == ["127.0.0.3"]


def test_the_background_refresh_follows_the_records(serve: Serve, live_zone: tuple[Any, str]) -> None:
    client, zone = live_zone
    server = serve(reader(client, zone), refresh_seconds=0.05)
    shift(client, zone, blue=0, green=100)
    wait_until(lambda: addresses_in(query(server)) == ["127.0.0.3"], 10, "green answered")


def test_with_the_route53_api_down_it_answers_from_the_last_records(
    serve: Serve, live_zone: tuple[Any, str], moto_server: MotoServer
) -> None:
    client, zone = live_zone
    server = serve(reader(client, zone), refresh_seconds=0.05)
    assert server.refresh_failures == 0

    moto_server.stop()
    try:
        wait_until(lambda: server.refresh_failures >= 3, 10, "failed reads counted")
        assert server.last_error is not None
        assert addresses_in(query(server)) == ["127.0.0.2"]
    finally:
        moto_server.start()  # the fixture's teardown needs it
    shift(client, zone, blue=0, green=100)
    wait_until(
        lambda: addresses_in(query(server)) == ["127.0.0.3"], 10, "green answered once the API is back"
    )
    assert server.last_error is None


def test_each_failed_read_is_counted(serve: Serve) -> None:
    records: Records | None = [weighted("blue", 100), weighted("green", 0)]

    def read() -> Records:
        if records is None:
            raise ConnectionError("route53 is down")
        return records

    server = serve(read, refresh_seconds=3600)
    records = None
    server.refresh()
    server.refresh()
    assert (server.refresh_failures, server.last_error) == (2, "ConnectionError: route53 is down")
    assert server.choose() == Answer("127.0.0.2", ALIAS_TTL, "blue")


def test_a_record_it_cannot_answer_from_is_a_failed_read(serve: Serve) -> None:
    unknown = {
        **weighted("green", 10),
        "AliasTarget": {**weighted("green", 10)["AliasTarget"], "DNSName": "x."},
    }
    server = serve(lambda: [weighted("blue", 100), unknown])
    assert server.refresh_failures == 1
    assert server.last_error is not None and "aliases x." in server.last_error
    assert server.choose() is None
    assert query(server).header.rcode == RCODE.SERVFAIL  # nothing read yet to answer from


def test_a_name_without_records_is_nxdomain(serve: Serve) -> None:
    server = serve(lambda: [{**weighted("blue", 100), "Name": "other.example.com."}])
    assert server.choose() is None
    assert query(server).header.rcode == RCODE.NXDOMAIN
