"""Sticky-session accounting: when may a session move to another instance?

A move is allowed when the instance it left was not healthy in Envoy's eyes (or was
being stopped by the rehearsal), when its color had no weight, or when the client's DNS
answer changed in between (with DNS switching, stickiness is each balancer's promise, not
the name's). Anything else is a sticky violation. Envoy's own view of health is sampled from its admin interface.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from cutover.envoy.weights import host_health
from cutover.rehearsal.load import Attempt

Interval = tuple[float, float]


@dataclass
class Exemptions:
    instances: dict[str, list[Interval]] = field(
        default_factory=lambda: defaultdict(list)
    )  # served_by -> when unhealthy
    colors: dict[str, list[Interval]] = field(
        default_factory=lambda: defaultdict(list)
    )  # color -> when weight 0
    everything: list[Interval] = field(default_factory=list)  # e.g. the database restarting

    def exempt(self, served_by: str, start: float, end: float) -> bool:
        color = served_by.split("/")[0]
        spans = [*self.instances.get(served_by, []), *self.colors.get(color, []), *self.everything]
        return any(s <= end and start <= e for s, e in spans)


@dataclass(frozen=True)
class Violation:
    session: int
    moved_from: str
    moved_to: str
    at: float


def sticky_violations(attempts: list[Attempt], exemptions: Exemptions) -> list[Violation]:
    by_session: dict[int, list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        if attempt.served_by and attempt.status is not None and attempt.status < 500:
            by_session[attempt.session].append(attempt)
    found = []
    for session, answered in by_session.items():
        answered.sort(key=lambda a: a.at)
        for previous, current in itertools.pairwise(answered):
            if current.address != previous.address:
                continue  # DNS sent the client to another balancer: not the balancer's stickiness
            if current.served_by != previous.served_by and not exemptions.exempt(
                previous.served_by, previous.at, current.at
            ):
                found.append(Violation(session, previous.served_by, current.served_by, current.at))
    return found


class EnvoyHealthMonitor:
    """Samples Envoy's health view of every upstream host every `interval` seconds and
    records, per instance, the intervals during which Envoy did not consider it healthy."""

    def __init__(
        self, admin_url: str, instance_by_port: dict[int, str], exemptions: Exemptions, interval: float = 0.1
    ):
        self.admin_url = admin_url
        self.instance_by_port = instance_by_port
        self.exemptions = exemptions
        self.interval = interval
        self._unhealthy_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envoy-health-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        now = time.monotonic()
        for instance, since in self._unhealthy_since.items():
            self.exemptions.instances[instance].append((since, now))
        self._unhealthy_since.clear()

    def _run(self) -> None:
        with httpx.Client(timeout=1) as http:
            while not self._stop.wait(self.interval):
                try:
                    clusters = http.get(f"{self.admin_url}/clusters", params={"format": "json"}).json()
                except (httpx.HTTPError, ValueError):
                    continue
                self._record(clusters, time.monotonic())

    def _record(self, clusters: dict[str, Any], now: float) -> None:
        for port, healthy in host_health(clusters).items():
            instance = self.instance_by_port.get(port)
            if instance is None:
                continue
            if not healthy and instance not in self._unhealthy_since:
                self._unhealthy_since[instance] = (
                    now - self.interval
                )  # it may have turned just after the last sample
            elif healthy and instance in self._unhealthy_since:
                self.exemptions.instances[instance].append((self._unhealthy_since.pop(instance), now))
