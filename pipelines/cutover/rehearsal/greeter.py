"""The rehearsal's second service: `examples/greeter`, released and rolled back beside ledger.

What it needs from the stack (its command, environment, versions), and a light client that
asks for `/hello` through DNS and greeter's host on the shared ALBs, as greeter's users do,
counting every answer: one that is not greeter's 200 is a failed request.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import cutover
from cutover.rehearsal.load import Attempt, DnsTarget
from cutover.rehearsal.resolver import CachingResolver, ResolveError

NAME = "greeter"
BLUE_IMAGE = "v0.1.0"  # what blue runs before the release
RELEASE_IMAGE = "v0.2.0"  # what the release puts on green
# A build whose setting greeter refuses at start (exit 2): `cutover release --image v0.3.0-bad`
# fails at the deploy, traffic untouched.
BAD_IMAGE = "v0.3.0-bad"
BAD_IMAGE_ENV = {"HTTP_KEEP_ALIVE_SECONDS": "forever"}
READY_PATH = "/readyz"
LIVE_PATH = "/livez"
HELLO_PATH = "/hello?name=rehearsal"


def source_dir() -> Path | None:
    """examples/greeter beside the cutover package (a clone, or an editable install); None
    when cutover is installed without the repository."""
    root = Path(cutover.__file__).resolve().parents[2] / "examples" / NAME
    return root if (root / NAME / "__main__.py").is_file() else None


def command() -> list[str]:
    """One greeter instance, with the Python running cutover (uvicorn is one of cutover's)."""
    return [sys.executable, "-m", NAME]


def app_env(source: Path, drain_seconds: str) -> dict[str, str]:
    """greeter's settings in every color: its package on PYTHONPATH (prepended), the drain as
    ledger's, its keep-alive (its default, 75 s) above the ALB's idle timeout."""
    paths = [str(source), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        "PYTHONPATH": os.pathsep.join(paths),
        "DRAIN_SECONDS": drain_seconds,
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
        "HTTP_KEEP_ALIVE_SECONDS": "75",
    }


@dataclass
class LightResult:
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.attempts)

    def failed(self) -> list[Attempt]:
        """Not greeter's 200: an error, another status, or another service's answer."""
        return [a for a in self.attempts if a.status != 200 or a.error]

    def served_by_color(self) -> dict[str, int]:
        counts = Counter(a.served_by.split("/")[0] for a in self.attempts if a.served_by and not a.error)
        return {color: counts.get(color, 0) for color in ("blue", "green")}


class LightClient:
    """A few clients asking greeter for `/hello` every `interval` seconds each, each through
    a caching resolver of its own (the first holds answers `hold_factor` times the TTL, as
    some clients do), at most `max_requests` in all. Threads: the release code may block."""

    def __init__(
        self,
        target: DnsTarget,
        *,
        clients: int = 2,
        interval: float = 0.25,
        max_requests: int = 2000,
        timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.clients = clients
        self.interval = interval
        self.max_requests = max_requests
        self.timeout = timeout
        self.result = LightResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._client, args=(index,), name=f"{NAME}-client-{index}", daemon=True)
            for index in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> LightResult:
        """No new request; the ones in flight end (each within `timeout`)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        return self.result

    def _client(self, index: int) -> None:
        hold = self.target.hold_factor if index == 0 else 1.0
        resolver = CachingResolver(self.target.server, self.target.name, hold_factor=hold)
        host = self.target.name.rstrip(".")
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(timeout=self.timeout, limits=limits) as http:
            while not self._stop.is_set():
                with self._lock:
                    if self.result.requests >= self.max_requests:
                        return
                self._one(http, resolver, host, index)
                self._stop.wait(self.interval)

    def _one(self, http: httpx.Client, resolver: CachingResolver, host: str, session: int) -> None:
        address = ""
        try:
            address = resolver.resolve().address
            answer = http.get(f"http://{address}:{self.target.port}{HELLO_PATH}", headers={"Host": host})
        except (httpx.HTTPError, ResolveError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            attempt = Attempt(time.monotonic(), session, "", None, "hello", address=address, error=error)
        else:
            body = answer.text
            wrong = (
                ""
                if answer.status_code != 200 or '"greeting"' in body
                else f"not greeter's answer: {body[:120]}"
            )
            attempt = Attempt(
                time.monotonic(),
                session,
                answer.headers.get("x-served-by", ""),
                answer.status_code,
                "hello",
                address=address,
                error=wrong,
            )
        with self._lock:
            self.result.attempts.append(attempt)
