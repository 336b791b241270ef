"""DNS discovery against a real DNS server on 127.0.0.1 whose answers change mid-test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from cutover.local.ports import free_port
from tests.app.conftest import StartLedger
from tests.app.test_cluster import peer_ids, wait_until

NAME = "ledger-blue-headless.ledger.svc.cluster.local."
INTERVAL = 0.5


class HeadlessService(BaseResolver):  # type: ignore[misc]
    """Answers A queries for NAME with whatever addresses the test sets, like kube-dns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._addresses: list[str] = []
        self.queries = 0

    def set(self, *addresses: str) -> None:
        with self._lock:
            self._addresses = list(addresses)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        self.queries += 1
        question = request.q
        if str(question.qname) == NAME and question.qtype == QTYPE.A:
            with self._lock:
                for address in self._addresses:
                    reply.add_answer(RR(NAME, QTYPE.A, rdata=A(address), ttl=5))
        return reply


@pytest.fixture
def dns_server() -> Iterator[tuple[HeadlessService, int]]:
    service = HeadlessService()
    port = free_port()
    server = DNSServer(service, port=port, address="127.0.0.1", tcp=False)
    server.start_thread()
    try:
        yield service, port
    finally:
        server.stop()


def test_dns_discovery_follows_the_records(
    start_ledger: StartLedger, dns_server: tuple[HeadlessService, int]
) -> None:
    service, dns_port = dns_server
    port = free_port()
    service.set("127.0.0.1", "127.0.0.2")
    env: dict[str, Any] = {
        "CLUSTER_DISCOVERY": f"dns:{NAME.rstrip('.')}",
        "CLUSTER_DNS_SERVER": f"127.0.0.1:{dns_port}",
        "CLUSTER_INTERVAL_SECONDS": str(INTERVAL),
    }
    a = start_ledger(port=port, host="127.0.0.1", INSTANCE_ID="pod-a", **env)
    b = start_ledger(port=port, host="127.0.0.2", INSTANCE_ID="pod-b", **env)
    c = start_ledger(port=port, host="127.0.0.3", INSTANCE_ID="pod-c", **env)

    wait_until(lambda: peer_ids(a) == {"pod-b"}, 5, "a finds b (c is not in DNS yet)")
    assert peer_ids(c) == {"pod-a", "pod-b"}  # c is not published, but it can see the others

    service.set("127.0.0.1", "127.0.0.2", "127.0.0.3")
    wait_until(lambda: peer_ids(a) == {"pod-b", "pod-c"}, 5, "a finds c once DNS lists it")

    service.set("127.0.0.1", "127.0.0.3")  # b is still running, but no longer in DNS
    took = wait_until(lambda: peer_ids(a) == {"pod-c"}, 5, "b leaves a's view")
    assert took <= 2 * INTERVAL + 0.5, took
    assert b.running()

    service.set()  # the Service has no endpoints at all: a is alone, and says so
    wait_until(lambda: peer_ids(a) == set(), 5, "a is alone")
    assert service.queries > 10
