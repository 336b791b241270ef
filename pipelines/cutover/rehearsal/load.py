"""The rehearsal's load: many client sessions, each with its own cookie jar, reading
accounts and making transfers through the proxy.

A session lasts a few dozen requests, then a new one starts (so new sessions follow the
weights while old ones stay on their color). A transfer that gets a 5xx or a dropped
connection is retried with the same Idempotency-Key until it succeeds, so "acknowledged"
means the client holds a 201 for that key. Every attempt is recorded for the report.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from cutover.rehearsal.resolver import CachingResolver, ResolveError


@dataclass(frozen=True)
class Attempt:
    at: float  # monotonic time the response (or error) arrived
    session: int
    served_by: str  # "<color>/<instance>", "" when no answer
    status: int | None  # None: the connection failed
    operation: str  # "read" | "transfer"
    key: str = ""
    address: str = ""  # the balancer's address the client's DNS answer sent it to ("" without DNS)
    error: str = ""  # why there was no answer (the exception), for the report

    def describe(self, start: float) -> dict[str, Any]:
        """For a report: what happened, `at_s` seconds after `start`."""
        return {
            "at_s": round(self.at - start, 3),
            "operation": self.operation,
            "status": self.status,
            "served_by": self.served_by,
            "address": self.address,
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True)
class DnsTarget:
    """Clients find the service by name, as they do in AWS: each client resolves through a
    caching resolver of its own (honouring the TTL; a share holds answers longer, as some
    clients do) and talks to the balancer at the answered address."""

    server: tuple[str, int]  # the authoritative DNS server
    name: str  # e.g. "ledger.example.com."
    port: int  # the balancers' listener port (the same on every balancer address)
    hold_share: float = 0.2  # share of clients that keep answers hold_factor times the TTL
    hold_factor: float = 4.0


@dataclass
class LoadResult:
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # idempotency key -> transfer id
    refused: int = 0  # 422 insufficient funds: a correct answer, not a failure
    gave_up: int = 0  # operations still failing when the run ended

    @property
    def requests(self) -> int:
        return len(self.attempts)

    def failed(self, start: float = float("-inf"), end: float = float("inf")) -> list[Attempt]:
        return [a for a in self.attempts if start <= a.at < end and (a.status is None or a.status >= 500)]

    def served_by_color(self) -> dict[str, int]:
        counts = Counter(a.served_by.split("/")[0] for a in self.attempts if a.served_by)
        return {color: counts.get(color, 0) for color in ("blue", "green")}


@dataclass(frozen=True)
class _Session:
    http: httpx.AsyncClient  # its own cookie jar and (one) keep-alive connection
    number: int
    resolver: CachingResolver | None  # the client's, shared by its sessions


class LoadGenerator:
    """Runs in a thread of its own (own event loop) so the release code can block freely."""

    def __init__(
        self,
        url: str | DnsTarget,
        accounts: list[str],
        *,
        clients: int = 16,
        session_length: tuple[int, int] = (15, 40),
        transfer_share: float = 0.4,
        think_seconds: float = 0.01,
        seed: int = 7,
    ) -> None:
        self.url = url
        self.accounts = accounts
        self.clients = clients
        self.session_length = session_length
        self.transfer_share = transfer_share
        self.think_seconds = think_seconds
        self.result = LoadResult()
        self._rng = random.Random(seed)
        self._sessions = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name="rehearsal-load", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> LoadResult:
        """No new operations; operations in flight finish (retrying) first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    async def _run(self) -> None:
        await asyncio.gather(*(self._client(index) for index in range(self.clients)))

    def _resolver(self, index: int) -> CachingResolver | None:
        if not isinstance(self.url, DnsTarget):
            return None
        target = self.url
        holds = index < round(self.clients * target.hold_share)
        return CachingResolver(target.server, target.name, hold_factor=target.hold_factor if holds else 1.0)

    async def _client(self, index: int) -> None:
        resolver = self._resolver(index)  # one per client, kept across its sessions (an OS cache)
        base_url = self.url if isinstance(self.url, str) else ""
        while not self._stop.is_set():
            with self._lock:
                self._sessions += 1
                session = self._sessions
            length = self._rng.randint(*self.session_length)
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(base_url=base_url, timeout=15, limits=limits) as http:
                for _ in range(length):
                    if self._stop.is_set():
                        return
                    if self._rng.random() < self.transfer_share:
                        await self._transfer(_Session(http, session, resolver))
                    else:
                        await self._read(_Session(http, session, resolver))
                    await asyncio.sleep(self.think_seconds)

    async def _read(self, session: _Session) -> None:
        account = self._rng.choice(self.accounts)
        await self._until_answered(session, "read", "GET", f"/accounts/{account}", None, "")

    async def _transfer(self, session: _Session) -> None:
        source, target = self._rng.sample(self.accounts, 2)
        key = f"rehearsal-{uuid.uuid4().hex}"
        body = {"from_account_id": source, "to_account_id": target, "amount": self._rng.randint(1, 500)}
        answer = await self._until_answered(session, "transfer", "POST", "/transfers", body, key)
        if answer is None:
            return
        if answer.status_code == 201:
            self.result.acknowledged[key] = answer.json()["id"]
        elif answer.status_code == 422:
            self.result.refused += 1

    async def _until_answered(
        self,
        session: _Session,
        operation: str,
        method: str,
        path: str,
        body: object,
        key: str,
    ) -> httpx.Response | None:
        """One operation: retried (same key) on 5xx or a dropped connection, for up to 60 s."""
        deadline = time.monotonic() + 60
        delay = 0.05
        headers = {"Idempotency-Key": key} if key else {}
        while True:
            try:
                address = ""
                url, address = await self._where(session.resolver, path, headers)
                answer = await session.http.request(method, url, json=body, headers=headers)
            except (httpx.HTTPError, ResolveError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
                self.result.attempts.append(
                    Attempt(time.monotonic(), session.number, "", None, operation, key, address, error)
                )
            else:
                served_by = answer.headers.get("x-served-by", "")
                self.result.attempts.append(
                    Attempt(
                        time.monotonic(),
                        session.number,
                        served_by,
                        answer.status_code,
                        operation,
                        key,
                        address,
                    )
                )
                if answer.status_code < 500:
                    return answer
            if time.monotonic() > deadline:
                self.result.gave_up += 1
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _where(
        self, resolver: CachingResolver | None, path: str, headers: dict[str, str]
    ) -> tuple[str, str]:
        """The URL of this attempt, and the balancer address DNS gave ("" without DNS)."""
        if resolver is None or not isinstance(self.url, DnsTarget):
            return path, ""
        resolved = await resolver.resolve_async()
        headers["Host"] = self.url.name.rstrip(".")
        return f"http://{resolved.address}:{self.url.port}{path}", resolved.address
