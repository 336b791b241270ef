"""Prometheus metrics for one ledger process, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Latency buckets in seconds: fine-grained where an API like this one lives.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PoolStats = Callable[[], tuple[int, int, int] | None]  # (in use, idle, max) or None


class Metrics:
    """The metrics ledger exports on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ledger_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "ledger_http_request_duration_seconds",
            "Time from request start to the end of the response body.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ledger_http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
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
