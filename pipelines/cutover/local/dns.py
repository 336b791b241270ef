"""Route53's data plane on loopback: an authoritative DNS server for weighted names (one per
service, in one zone) that answers from the records Route53's API reports (a moto server in
the rehearsal).

CLOUD-FACTS (Route53) it models:
- weights are relative (0-255); a weight-0 record gets no answers unless every record has
  weight 0, then each gets an equal share;
- an alias record has no TTL of its own: the answer carries the alias target's TTL
  (`alias_ttl`, 60 s for an ALB); a non-alias record answers with its own TTL and value;
- the data plane stays up when the control-plane API fails: when reading the records
  fails, the server keeps answering from the last records it read.

Other names in the zone get NXDOMAIN (the apex: no data), names outside it REFUSED; both
negative answers carry the zone's SOA, as Route53's do, for negative caching. A query with
no question, several, or a name no packet can carry gets FORMERR; garbage gets no answer
(logged at debug, never a traceback on stderr); a TCP client that stalls is dropped after
TCP_IDLE_SECONDS.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, A, DNSBuffer, DNSHeader, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer, TCPServer, UDPServer

__all__ = ["Answer", "WeightedDnsServer"]

HOST = "127.0.0.1"
MAX_WEIGHT = 255
POLL = 0.1  # seconds between the socket servers' shutdown checks: stop() takes about this long
TCP_IDLE_SECONDS = 5.0  # a TCP client that sends nothing for this long is disconnected
# Route53's SOA for a new hosted zone: refresh, retry, expire, minimum (negative-caching TTL)
# and the record's own TTL.
SOA_TIMES = (7200, 900, 1209600, 86400)
SOA_TTL = 900
SOA_MNAME = "ns-2048.awsdns-64.net."
SOA_RNAME = "awsdns-hostmaster.amazon.com."

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """One answer for the weighted name: the chosen balancer's address and the TTL."""

    address: str  # IPv4 of the chosen balancer
    ttl: int
    set_identifier: str  # "blue" / "green"


@dataclass(frozen=True)
class _Weighted:
    answer: Answer
    weight: int


def _normalise(name: str) -> str:
    return name.lower().rstrip(".") + "."


def _weighted_records(
    records: list[dict[str, Any]], name: str, addresses: Mapping[str, str], alias_ttl: int
) -> list[_Weighted]:
    """The weighted A records for `name`; ValueError for one the server could not answer from."""
    found: list[_Weighted] = []
    for record in records:
        if record.get("Type") != "A" or "SetIdentifier" not in record:
            continue
        if _normalise(str(record.get("Name", ""))) != name:
            continue
        identifier = str(record["SetIdentifier"])
        weight = int(record.get("Weight", -1))
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"record {identifier!r} has weight {record.get('Weight')!r}, not 0-{MAX_WEIGHT}")
        if "AliasTarget" in record:
            target = _normalise(str(record["AliasTarget"]["DNSName"]))
            if target not in addresses:
                raise ValueError(f"record {identifier!r} aliases {target}, which has no local address")
            address, ttl = addresses[target], alias_ttl
        else:
            address, ttl = str(record["ResourceRecords"][0]["Value"]), int(record["TTL"])
        ipaddress.IPv4Address(address)  # ValueError when it is not one
        found.append(_Weighted(Answer(address, ttl, identifier), weight))
    return found


class _Quiet(DNSLogger):  # type: ignore[misc]
    """dnslib logs every query with print; only malformed packets are worth a line."""

    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated", prefix=False, logf=_log.debug)


class _Handler(DNSHandler):  # type: ignore[misc]
    """dnslib's handler, with a deadline on each TCP read: a client that stalls mid-query
    (or sends a length it never fills) is dropped instead of holding a thread for ever."""

    def setup(self) -> None:
        if self.server.socket_type == socket.SOCK_STREAM:
            self.request.settimeout(TCP_IDLE_SECONDS)


class _QuietUDP(UDPServer):  # type: ignore[misc]
    """socketserver prints a failed request's traceback to stderr: a debug line instead."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("DNS request from %s failed", client_address, exc_info=True)


class _QuietTCP(TCPServer):  # type: ignore[misc]
    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("DNS request from %s failed", client_address, exc_info=True)


class _Resolver:
    """dnslib's resolver interface, handing each query to the server."""

    def __init__(self, reply: Callable[[DNSRecord], DNSRecord]) -> None:
        self._reply = reply

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        return self._reply(request)


class WeightedDnsServer:
    """Authoritative DNS on 127.0.0.1 for weighted names, answering from Route53's live records.

    `name` is the first service's; `more_names` are the other services' in the same zone
    (one read of the records serves them all). `answers` counts the answers for `name`,
    `answers_by_name` for each name."""

    def __init__(
        self,
        name: str,
        read_records: Callable[[], list[dict[str, Any]]],
        addresses: Mapping[str, str],
        alias_ttl: int,
        *,
        more_names: Sequence[str] = (),
        port: int = 0,
        refresh_seconds: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self.name = _normalise(name)
        labels = self.name.split(".", 1)
        if len(labels) < 2 or not labels[1]:
            raise ValueError(f"{name!r} has no parent zone")
        self.zone = labels[1]
        self.names = list(dict.fromkeys([self.name, *(_normalise(n) for n in more_names)]))
        for other in self.names[1:]:
            if other.split(".", 1)[-1] != self.zone:
                raise ValueError(f"{other!r} is not a name of the zone {self.zone} (as {self.name!r} is)")
        self._read_records = read_records
        self._addresses = {_normalise(target): address for target, address in addresses.items()}
        self._alias_ttl = alias_ttl
        self._refresh_seconds = refresh_seconds
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._records: dict[str, list[_Weighted]] | None = None  # per name; None: never read
        self._stopping = threading.Event()
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []
        self.port = port
        self.answers: Counter[str] = Counter()  # for `name`, by set identifier
        self.answers_by_name: dict[str, Counter[str]] = {n: Counter() for n in self.names}
        self.refresh_failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Read the records, then serve UDP and TCP on 127.0.0.1:port from background threads."""
        if self._servers:
            raise RuntimeError("the DNS server is already running")
        self.refresh()
        self._stopping.clear()
        self._servers = self._bind()
        self.port = int(self._servers[0].server.server_address[1])
        self._threads = [
            threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": POLL},
                name=f"dns-{kind}",
                daemon=True,
            )
            for server, kind in zip(self._servers, ("udp", "tcp"), strict=True)
        ]
        self._threads.append(threading.Thread(target=self._refresh_loop, name="dns-refresh", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop answering and close both sockets (queries then get ICMP port unreachable)."""
        self._stopping.set()
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def refresh(self) -> None:
        """Read the records now; on failure keep the last ones and count it."""
        try:
            live = self._read_records()
            records = {n: _weighted_records(live, n, self._addresses, self._alias_ttl) for n in self.names}
        except Exception as error:  # the API is down or answered something unusable: keep serving
            with self._lock:
                if self.last_error is None:
                    _log.warning(
                        "reading the records for %s failed, answering from the last read: %s",
                        self.name,
                        error,
                    )
                self.refresh_failures += 1
                self.last_error = f"{type(error).__name__}: {error}"
            return
        with self._lock:
            self._records = records
            self.last_error = None

    def choose(self, name: str | None = None) -> Answer | None:
        """One weighted choice over the cached records of `name` (default: the first name);
        None: nothing to answer."""
        with self._lock:
            records = (self._records or {}).get(self.name if name is None else _normalise(name))
            if not records:
                return None
            weights = [record.weight for record in records]
            if not any(weights):
                weights = [1] * len(weights)
            return self._random.choices(records, weights=weights)[0].answer

    def _bind(self) -> list[DNSServer]:
        """UDP and TCP on one port; with port 0, retry when the OS's UDP pick is taken for TCP."""
        resolver, logger = _Resolver(self._reply), _Quiet()
        for _ in range(20):
            udp = DNSServer(
                resolver, address=HOST, port=self.port, logger=logger, handler=_Handler, server=_QuietUDP
            )
            port = int(udp.server.server_address[1])
            try:
                tcp = DNSServer(
                    resolver, address=HOST, port=port, logger=logger, handler=_Handler, server=_QuietTCP
                )
            except OSError:
                udp.server.server_close()
                if self.port:
                    raise
                continue
            return [udp, tcp]
        raise OSError("found no port free for both UDP and TCP on 127.0.0.1")

    def _refresh_loop(self) -> None:
        while not self._stopping.wait(self._refresh_seconds):
            self.refresh()

    def _reply(self, request: DNSRecord) -> DNSRecord:
        if len(request.questions) != 1 or not _encodable(request.q.qname):
            # no question, several, or a name no answer can carry (a label over 63 bytes, a
            # name over 255): FORMERR without a question section, as servers answer it
            return DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=0, rcode=RCODE.FORMERR))
        reply = request.reply(ra=0, aa=1)
        qname, qtype = _normalise(str(request.q.qname)), request.q.qtype
        if qname in self.answers_by_name:
            self._answer_name(reply, qtype, qname)
        elif qname == self.zone:
            self._negative(reply, RCODE.NOERROR, answer_soa=qtype == QTYPE.SOA)
        elif qname.endswith("." + self.zone):
            self._negative(reply, RCODE.NXDOMAIN)
        else:
            reply.header.rcode = RCODE.REFUSED
        return reply

    def _answer_name(self, reply: DNSRecord, qtype: int, name: str) -> None:
        with self._lock:
            never_read = self._records is None
        if never_read:
            reply.header.rcode = RCODE.SERVFAIL  # nothing to answer from yet
            return
        answer = self.choose(name)
        if answer is None:
            self._negative(reply, RCODE.NXDOMAIN)  # the name has no records
        elif qtype != QTYPE.A:
            self._negative(reply, RCODE.NOERROR)  # the name exists, with no data of that type
        else:
            reply.add_answer(RR(name, QTYPE.A, rdata=A(answer.address), ttl=answer.ttl))
            with self._lock:
                self.answers_by_name[name][answer.set_identifier] += 1
                if name == self.name:
                    self.answers[answer.set_identifier] += 1

    def _negative(self, reply: DNSRecord, rcode: int, *, answer_soa: bool = False) -> None:
        reply.header.rcode = rcode
        soa = RR(
            self.zone,
            QTYPE.SOA,
            rdata=SOA(SOA_MNAME, SOA_RNAME, (1, *SOA_TIMES)),
            ttl=SOA_TTL,
        )
        if answer_soa:
            reply.add_answer(soa)
        else:
            reply.add_auth(soa)


def _encodable(name: Any) -> bool:
    """Whether `name` can be written into a packet (labels of 63 bytes at most, 255 in all)."""
    try:
        DNSBuffer().encode_name(name)
    except Exception:
        return False
    return True
