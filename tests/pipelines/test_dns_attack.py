"""The rehearsal's DNS server and resolver against hostile traffic, on 127.0.0.1 only and
bounded: malformed packets, stalled TCP clients, a flood of queries, forged answers. The
server must keep answering correct queries, stay quiet on stderr and never crash."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from cutover.local import dns
from cutover.local.dns import WeightedDnsServer
from cutover.rehearsal.resolver import CachingResolver, ResolveError
from tests.pipelines.conftest import ALB, RECORD, weighted

ADDRESSES = {ALB["blue"]: "127.0.0.2", ALB["green"]: "127.0.0.3"}
BLUE = "127.0.0.2"


@pytest.fixture
def server() -> Iterator[WeightedDnsServer]:
    served = WeightedDnsServer(RECORD, lambda: [weighted("blue", 100), weighted("green", 0)], ADDRESSES, 60)
    served.start()
    yield served
    served.stop()


def good_answer(server: WeightedDnsServer, *, tcp: bool = False) -> str:
    reply = DNSRecord.parse(DNSRecord.question(RECORD).send("127.0.0.1", server.port, tcp=tcp, timeout=5))
    assert reply.header.rcode == RCODE.NOERROR, reply
    return str(reply.rr[0].rdata)


def udp_exchange(server: WeightedDnsServer, packet: bytes, wait: float = 0.5) -> DNSRecord | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(packet, ("127.0.0.1", server.port))
        try:
            return DNSRecord.parse(sock.recv(65535))
        except TimeoutError:
            return None


def query_packet(qname: bytes, qid: int = 0x0A0B) -> bytes:
    """A query built by hand, so that it may hold what dnslib would refuse to build."""
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\x00\x01\x00\x01"


def label(text: bytes) -> bytes:
    return bytes([len(text)]) + text


GARBAGE: dict[str, bytes] = {
    "random bytes": os.urandom(64),
    "nothing": b"",
    "a truncated header": b"\x12\x34\x01",
    "a compression loop": query_packet(b"\xc0\x0c"),
    "more questions than bytes": b"\x00\x0c\x01\x00\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",
}
FORMAT_ERRORS: dict[str, bytes] = {
    "no question": DNSRecord(DNSHeader(id=7, q=0)).pack(),
    "two questions": DNSRecord(
        DNSHeader(id=8), questions=[DNSQuestion("other.example.com"), DNSQuestion(RECORD)]
    ).pack(),
    "a 64-byte label": query_packet(label(b"a" * 64) + b"\x00"),
    "a 300-byte name": query_packet(b"".join(label(bytes([c]) * 63) for c in b"abcde") + b"\x00"),
}


def test_garbage_gets_no_answer_and_changes_nothing(server: WeightedDnsServer, capfd: Any) -> None:
    for name, packet in GARBAGE.items():
        assert udp_exchange(server, packet) is None, name
        assert good_answer(server) == BLUE, name
    assert "Traceback" not in capfd.readouterr().err


def test_a_query_no_answer_can_carry_is_a_format_error(server: WeightedDnsServer, capfd: Any) -> None:
    for name, packet in FORMAT_ERRORS.items():
        reply = udp_exchange(server, packet, wait=5)
        assert reply is not None, f"{name}: no answer (the server failed on it)"
        assert reply.header.rcode == RCODE.FORMERR and not reply.rr, name
        assert reply.header.id == int.from_bytes(packet[:2], "big"), name
        assert good_answer(server) == BLUE and good_answer(server, tcp=True) == BLUE
    assert "Traceback" not in capfd.readouterr().err  # one bad packet, one traceback on stderr


def test_a_stalled_tcp_client_blocks_no_one_and_is_dropped(server: WeightedDnsServer) -> None:
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        stalled[0].sendall(b"\xff\xff")  # a length it never fills
        stalled[1].sendall(b"\x00")  # half a length
        # stalled[2] sends nothing at all
        assert good_answer(server) == BLUE and good_answer(server, tcp=True) == BLUE
        for sock in stalled:
            sock.settimeout(dns.TCP_IDLE_SECONDS + 30)  # a deadline, not a measurement
            assert sock.recv(16) == b"", "the server should close a connection that stalls"
    finally:
        for sock in stalled:
            sock.close()


def test_a_length_prefix_that_lies_gets_no_answer_and_no_crash(server: WeightedDnsServer) -> None:
    body = DNSRecord.question(RECORD).pack()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall((len(body) - 5).to_bytes(2, "big") + body[:-5])  # shorter than a question
        assert sock.recv(16) == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\x00\x00")  # zero: an empty message
        assert sock.recv(16) == b""
    assert good_answer(server, tcp=True) == BLUE


def test_a_flood_of_queries_is_answered_correctly_and_leaves_the_server_up(server: WeightedDnsServer) -> None:
    total, senders = 2000, 4
    answers: list[str] = []
    lock = threading.Lock()

    def flood(count: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            for n in range(count):
                sock.sendto(DNSRecord.question(RECORD).pack(), ("127.0.0.1", server.port))
                if n % 20 == 19:  # collect as it goes: a bounded backlog, never an endless loop
                    drain(sock)
            drain(sock)

    def drain(sock: socket.socket) -> None:
        while True:
            try:
                reply = DNSRecord.parse(sock.recv(65535))
            except TimeoutError:
                return
            with lock:
                answers.extend(str(rr.rdata) for rr in reply.rr)
            sock.settimeout(0.2)

    threads = [threading.Thread(target=flood, args=(total // senders,)) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert answers and set(answers) == {BLUE}  # every answer right (UDP may drop some under load)
    assert len(answers) >= total // 2, len(answers)
    assert good_answer(server) == BLUE and good_answer(server, tcp=True) == BLUE


# ------------------------------------------------------------------ the resolver, lied to


class Liar:
    """A UDP server that answers each query with `answer(request)` (same id and question)."""

    def __init__(self, answer: Callable[[DNSRecord], DNSRecord]) -> None:
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Liar:
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
            self.sock.sendto(self.answer(DNSRecord.parse(data)).pack(), client)


def test_an_a_record_for_another_name_is_not_taken() -> None:
    def other_name(request: DNSRecord) -> DNSRecord:
        reply = request.reply()
        reply.add_answer(RR("evil.example.net.", QTYPE.A, rdata=A("127.0.0.9"), ttl=300))
        return reply

    with Liar(other_name) as liar, pytest.raises(ResolveError, match="holds no A record"):
        CachingResolver(liar.address, RECORD, timeout=1).resolve()


def test_a_reply_for_another_question_is_ignored_until_the_timeout() -> None:
    def other_question(request: DNSRecord) -> DNSRecord:
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1), q=DNSQuestion("evil.example.net."))
        reply.add_answer(RR("evil.example.net.", QTYPE.A, rdata=A("127.0.0.9"), ttl=300))
        return reply

    with Liar(other_question) as liar, pytest.raises(ResolveError, match="no answer within"):
        CachingResolver(liar.address, RECORD, timeout=0.5).resolve()


def test_the_stop_is_prompt_with_clients_still_connected(server: WeightedDnsServer) -> None:
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        stalled.sendall(b"\xff\xff")
        good_answer(server, tcp=True)
        done = threading.Event()

        def stop() -> None:
            server.stop()
            done.set()

        threading.Thread(target=stop, daemon=True).start()
        assert done.wait(30), "stop() hung on a connected client"
    finally:
        stalled.close()
    with pytest.raises(OSError):
        DNSRecord.question(RECORD).send("127.0.0.1", server.port, timeout=1)
