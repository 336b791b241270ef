"""Metrics for canary analysis: a real Prometheus server for tests that scrape real ledger
processes, and injected series (a `MetricsSource` over requests given one by one).

Each color gets a list of `Request(status, seconds)`; the source answers with their count,
their 5xx count and their p99 (nearest rank), as a real source would for one window.
Usable by any test that needs a canary to look good or bad without a metrics backend.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cutover.analysis import ColorMetrics
from cutover.local.ports import free_port
from cutover.model import Color

# Debian's package puts it in /usr/bin; PROMETHEUS_BIN points elsewhere if need be.
PROMETHEUS = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus"
INSTALL = "apt-get update -q && apt-get install -y -q --no-install-recommends prometheus"


@dataclass(frozen=True)
class Request:
    status: int
    seconds: float


def p99(latencies: Sequence[float]) -> float | None:
    """Nearest-rank 99th percentile; None without data."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def summarize(requests: Iterable[Request]) -> ColorMetrics:
    batch = list(requests)
    return ColorMetrics(
        requests=float(len(batch)),
        errors=float(sum(1 for r in batch if 500 <= r.status <= 599)),
        p99_seconds=p99([r.seconds for r in batch]),
    )


@dataclass
class SeriesSource:
    """A MetricsSource over injected requests; `fail` makes it raise like a broken backend."""

    series: dict[Color, list[Request]] = field(default_factory=lambda: {"blue": [], "green": []})
    fail: Exception | None = None
    calls: list[tuple[Color, float]] = field(default_factory=list)

    def metrics(self, color: Color, window_seconds: float) -> ColorMetrics:
        self.calls.append((color, window_seconds))
        if self.fail is not None:
            raise self.fail
        return summarize(self.series[color])


def _get_json(url: str, timeout: float = 2.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


class PrometheusServer:
    """`/usr/bin/prometheus` on 127.0.0.1 with its own config and TSDB in a temp dir."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        jobs = [
            {
                "job_name": f"ledger-{color}",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [target], "labels": {"color": color}}],
            }
            for color, target in targets.items()
        ]
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": jobs}
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1.0) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready in {timeout}s:\n{self.log_tail()}")

    def query(self, promql: str) -> list[dict[str, object]]:
        answer = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert isinstance(answer, dict) and answer["status"] == "success", answer
        result = answer["data"]["result"]
        assert isinstance(result, list)
        return result

    def wait_for(self, promql: str, timeout: float = 20.0) -> None:
        """Until `promql` yields at least one sample."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query(promql):
                return
            time.sleep(0.25)
        raise AssertionError(f"{promql} yielded nothing in {timeout}s:\n{self.log_tail()}")

    def wait_scraped(self, since: float, scrapes: int = 1, timeout: float = 20.0) -> None:
        """Until every target has been scraped `scrapes` times after `since` (wall time): what
        the targets counted by then is in Prometheus. Synchronises on the scrapes themselves
        (each `up` sample carries its scrape's start time), not on a guess of how long they take."""
        deadline = time.monotonic() + timeout
        for _ in range(scrapes):
            while True:
                oldest = self.query("min(timestamp(up))")
                if oldest and float(oldest[0]["value"][1]) > since:  # type: ignore[index]
                    since = float(oldest[0]["value"][1])  # type: ignore[index]
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"no scrape after {since} in {timeout}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
