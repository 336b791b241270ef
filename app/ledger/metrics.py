"""Prometheus metrics for one ledger process, in a registry of its own."""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Latency buckets in seconds: fine-grained where an API like this one lives.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_LABELS = (*map(floatToGoString, LATENCY_BUCKETS), "+Inf")

PoolStats = Callable[[], tuple[int, int, int] | None]  # (in use, idle, max) or None


class Metrics:
    """The metrics ledger exports on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpRequestMetrics()
        self.registry.register(self.http)
        self.transfers = Counter(
            "ledger_transfers_total",
            "Transfer requests by outcome (committed, replayed, insufficient_funds, ...).",
            ("outcome",),
            registry=self.registry,
        )
        self.draining = Gauge(
            "ledger_draining", "1 while the process drains after SIGTERM.", registry=self.registry
        )
        self.ready = Gauge("ledger_ready", "1 when the last readiness check passed.", registry=self.registry)
        self.websockets = Gauge(
            "ledger_websockets_open", "Open /ws/transfers connections.", registry=self.registry
        )
        self.websocket_closes = Counter(
            "ledger_websocket_closes_total",
            "Websockets the server closed, by reason: draining, too_many, too_slow, rate_limited.",
            ("reason",),
            registry=self.registry,
        )
        self.feed_connected = Gauge(
            "ledger_feed_connected",
            "1 while the LISTEN connection behind the transfer feed is up; 0 means degraded.",
            registry=self.registry,
        )
        self.feed_reconnects = Counter(
            "ledger_feed_reconnects_total", "Times the transfer feed reconnected.", registry=self.registry
        )
        self.cluster_size = Gauge(
            "ledger_cluster_size",
            "Live instances this one knows of, itself included.",
            registry=self.registry,
        )
        self.cluster_size.set(1)
        self.rate_limited = Counter(
            "ledger_rate_limited_total", "Requests refused with 429.", registry=self.registry
        )
        self.http_connections = Gauge(
            "ledger_http_connections_open",
            "Open HTTP/1.1 connections (websockets apart).",
            registry=self.registry,
        )
        self.http_connections_closed = Counter(
            "ledger_http_connections_closed_total",
            "Connections the server closed on a client: header_timeout, body_timeout, evicted, "
            "over_capacity, request_header_fields_too_large, bad_request.",
            ("reason",),
            registry=self.registry,
        )
        self._pool_stats: PoolStats = lambda: None
        self.registry.register(_PoolCollector(lambda: self._pool_stats()))

    def watch_pool(self, stats: PoolStats) -> None:
        """Report the database pool through `stats`, read at scrape time."""
        self._pool_stats = stats

    def count_transfer(self, outcome: str) -> None:
        self.transfers.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self, stats: PoolStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ledger_db_pool_connections", "Database pool connections by state.", labels=["state"]
        )
        stats = self._stats()
        if stats is not None:
            in_use, idle, size_max = stats
            family.add_metric(["in_use"], in_use)
            family.add_metric(["idle"], idle)
            family.add_metric(["max"], size_max)
        yield family


class RequestSeries:
    """One (method, route, status): its request count and latency histogram."""

    __slots__ = ("bucket_counts", "count", "created", "total_seconds")

    def __init__(self) -> None:
        self.count = 0
        self.total_seconds = 0.0
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bound
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        """Count one request that took `seconds`."""
        self.count += 1
        self.total_seconds += seconds
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le: seconds <= bound


class HttpRequestMetrics(Collector):
    """`ledger_http_requests_total`, `ledger_http_request_duration_seconds` and
    `ledger_http_requests_in_flight`, kept as plain numbers.

    Every request updates them, so they are the metrics' hot path: prometheus_client's
    Counter and Histogram take a lock per update (three per request) for updates from any
    thread. These are updated and read (by the /metrics handler) on the event loop's thread
    only, so they need none; the exposition is the same as those classes give.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._series: dict[tuple[str, str, int], RequestSeries] = {}

    def series(self, method: str, route: str, status: int) -> RequestSeries:
        """The series that counts requests answered `status` on this method and route."""
        series = self._series.get((method, route, status))
        if series is None:
            series = self._series[(method, route, status)] = RequestSeries()
        return series

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "ledger_http_requests",
            "HTTP requests by method, route template and status code.",
            labels=("method", "route", "status"),
        )
        by_route: dict[tuple[str, str], list[RequestSeries]] = {}
        created = _created_series_exported()
        for (method, route, status), series in self._series.items():
            requests.add_metric(
                (method, route, str(status)), series.count, created=series.created if created else None
            )
            by_route.setdefault((method, route), []).append(series)
        yield requests
        latency = HistogramMetricFamily(
            "ledger_http_request_duration_seconds",
            "Time from request start to the end of the response body.",
            labels=("method", "route"),
        )
        for (method, route), statuses in by_route.items():
            counts = map(sum, zip(*(s.bucket_counts for s in statuses), strict=True))
            latency.add_metric(
                (method, route),
                list(zip(_BUCKET_LABELS, itertools.accumulate(counts), strict=True)),
                sum(s.total_seconds for s in statuses),
            )
            if created:  # what prometheus_client's Histogram exports beside the buckets
                latency.samples.append(
                    Sample(
                        "ledger_http_request_duration_seconds_created",
                        {"method": method, "route": route},
                        min(s.created for s in statuses),
                    )
                )
        yield latency
        yield GaugeMetricFamily(
            "ledger_http_requests_in_flight", "HTTP requests being served.", value=self.in_flight
        )


def _created_series_exported() -> bool:
    """Whether prometheus_client exports `_created` series: off with the environment variable
    PROMETHEUS_DISABLE_CREATED_SERIES or `prometheus_client.disable_created_metrics()`, whose
    flag these metrics follow like the library's own."""
    return bool(getattr(prometheus_metrics, "_use_created", True))
