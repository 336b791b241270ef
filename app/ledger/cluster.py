"""Cluster membership: find peers (DNS or a static list), probe them, keep the live set.

Like libcluster's Kubernetes DNS strategy: every interval, resolve the headless Service's
A records, probe each address's `/health/ready`, and keep the peers that answer. A peer
that leaves DNS is dropped at the next refresh; one that misses two probes in a row is
dropped then, so either way it is gone within two intervals. Joins and leaves are logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx

from ledger.tasks import cancel_and_wait

log = logging.getLogger("ledger.cluster")

MAX_MISSES = 2  # a peer that misses this many probes in a row leaves the list


class PeerSource(Protocol):
    """Where candidate peer addresses (`host:port`) come from."""

    name: str

    async def addresses(self) -> set[str]: ...


class StaticSource:
    """A fixed list, as `CLUSTER_DISCOVERY=static:host:port,...` gives it."""

    name = "static"

    def __init__(self, peers: tuple[str, ...]) -> None:
        self._peers = set(peers)

    async def addresses(self) -> set[str]:
        return set(self._peers)


class DnsSource:
    """A and AAAA records of a (headless Service) name; every peer listens on `port`."""

    name = "dns"

    def __init__(self, hostname: str, port: int, nameserver: str = "", timeout: float = 2.0) -> None:
        self.hostname = hostname
        self.port = port
        self._resolver = dns.asyncresolver.Resolver(configure=not nameserver)
        if nameserver:
            host, _, server_port = nameserver.rpartition(":")
            self._resolver.nameservers = [host]
            self._resolver.port = int(server_port)
        self._resolver.lifetime = timeout
        self._resolver.cache = None  # every refresh asks again: membership is the point

    async def addresses(self) -> set[str]:
        found: set[str] = set()
        for record_type, template in (("A", "{}:{}"), ("AAAA", "[{}]:{}")):
            try:
                answer = await self._resolver.resolve(self.hostname, record_type)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue  # no such records (yet): an empty cluster is an answer, not an error
            found.update(template.format(record.to_text(), self.port) for record in answer)
        return found


@dataclass
class Peer:
    address: str
    served_by: str = ""  # "<color>/<instance>", from the peer's x-served-by header
    ready: bool = False
    last_seen: float = 0.0  # wall clock of the last answer
    misses: int = 0  # probes in a row that got no answer

    def describe(self) -> dict[str, Any]:
        color, _, instance = self.served_by.partition("/")
        return {
            "address": self.address,
            "id": instance,
            "color": color,
            "ready": self.ready,
            "last_seen": datetime.fromtimestamp(self.last_seen, UTC).isoformat(timespec="milliseconds"),
        }


class Cluster:
    """The live peer set of this instance, refreshed every `interval` seconds."""

    def __init__(
        self,
        source: PeerSource | None,
        served_by: str,
        interval: float,
        *,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.source = source
        self.served_by = served_by
        self.interval = interval
        self.peers: dict[str, Peer] = {}
        self.source_error = ""
        self._self_addresses: set[str] = set()
        self._on_change = on_change or (lambda _size: None)
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def size(self) -> int:
        """Instances in the cluster, this one included (never below 1)."""
        return 1 + len(self.peers)

    def start(self) -> None:
        if self.source is not None:
            self._http = httpx.AsyncClient(timeout=min(1.0, self.interval / 2))
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._http is not None:
            await self._http.aclose()

    def describe(self) -> list[dict[str, Any]]:
        return [peer.describe() for peer in sorted(self.peers.values(), key=lambda p: p.address)]

    async def refresh(self) -> None:
        """One round: resolve, probe every candidate, then drop the silent and the gone."""
        assert self.source is not None and self._http is not None
        try:
            candidates = await self.source.addresses()
            self.source_error = ""
        except (dns.exception.DNSException, OSError) as exc:
            # Keep the last known members; the probes below still age out the dead ones.
            self.source_error = f"{self.source.name} lookup failed: {type(exc).__name__}"
            log.warning(
                "peer lookup failed, keeping the last known peers", extra={"error": self.source_error}
            )
            candidates = set(self.peers)
        candidates -= self._self_addresses
        before = set(self.peers)
        answers = await asyncio.gather(*(self._probe(address) for address in candidates))
        wall = time.time()
        for address, answer in zip(candidates, answers, strict=True):
            if answer is None:
                if address in self.peers:
                    self.peers[address].misses += 1
                continue
            served_by, ready = answer
            if served_by == self.served_by:
                self._self_addresses.add(address)
                continue
            peer = self.peers.get(address)
            if peer is None:
                peer = self.peers[address] = Peer(address)
                log.info("peer joined", extra={"peer": address, "peer_served_by": served_by})
            peer.served_by, peer.ready, peer.last_seen, peer.misses = served_by, ready, wall, 0
        for address, peer in list(self.peers.items()):
            gone = address not in candidates
            silent = peer.misses >= MAX_MISSES
            if gone or silent:
                del self.peers[address]
                reason = "left discovery" if gone else "stopped answering"
                log.info(
                    "peer left", extra={"peer": address, "peer_served_by": peer.served_by, "reason": reason}
                )
        if set(self.peers) != before:
            self._on_change(self.size)

    async def _probe(self, address: str) -> tuple[str, bool] | None:
        assert self._http is not None
        try:
            answer = await self._http.get(f"http://{address}/health/ready")
        except httpx.HTTPError:
            return None
        return answer.headers.get("x-served-by", ""), answer.status_code == 200

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.refresh()
            except Exception:  # membership must keep going whatever one round hit
                log.exception("cluster refresh failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
