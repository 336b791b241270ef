"""The request metrics kept as plain numbers (app/ledger/metrics.py) expose exactly what
prometheus_client's own Counter, Histogram and Gauge expose for the same requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

from ledger.metrics import LATENCY_BUCKETS, HttpRequestMetrics

# (method, route, status, seconds): on a bucket's bound, between bounds, past the last one,
# several statuses of one route (one histogram), and a second route.
REQUESTS = [
    ("GET", "/accounts/{account_id}", 200, 0.001),
    ("GET", "/accounts/{account_id}", 200, 0.0010001),
    ("GET", "/accounts/{account_id}", 404, 0.0025),
    ("GET", "/accounts/{account_id}", 200, 0.3),
    ("GET", "/accounts/{account_id}", 503, 11.0),
    ("POST", "/transfers", 201, 0.0),
    ("POST", "/transfers", 201, 10.0),
    ("POST", "/transfers", 422, 0.004),
]


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample but the `_created` timestamps, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def _reference(in_flight: int) -> bytes:
    registry = CollectorRegistry()
    requests = Counter(
        "ledger_http_requests_total",
        "HTTP requests by method, route template and status code.",
        ("method", "route", "status"),
        registry=registry,
    )
    latency = Histogram(
        "ledger_http_request_duration_seconds",
        "Time from request start to the end of the response body.",
        ("method", "route"),
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    gauge = Gauge("ledger_http_requests_in_flight", "HTTP requests being served.", registry=registry)
    for method, route, status, seconds in REQUESTS:
        requests.labels(method, route, str(status)).inc()
        latency.labels(method, route).observe(seconds)
    gauge.set(in_flight)
    return generate_latest(registry)


def _ours(in_flight: int) -> bytes:
    metrics = HttpRequestMetrics()
    registry = CollectorRegistry()
    registry.register(metrics)
    for method, route, status, seconds in REQUESTS:
        metrics.series(method, route, status).observe(seconds)
    metrics.in_flight = in_flight
    return generate_latest(registry)


def test_the_exposition_is_prometheus_clients_for_the_same_requests() -> None:
    ours, theirs = _ours(in_flight=2), _reference(in_flight=2)
    assert _samples(ours) == _samples(theirs)
    assert len(_samples(ours)) == 2 * 16 + 5 + 1  # 2 histograms (14 buckets, sum, count), 5 counters, gauge
    assert _created(ours) == _created(theirs)  # their values: when each series began
    assert len(_created(ours)) == 5 + 2


@pytest.fixture
def created_series_disabled() -> Iterator[None]:
    """As PROMETHEUS_DISABLE_CREATED_SERIES=true does at import."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    yield
    enable_created_metrics()  # type: ignore[no-untyped-call]


@pytest.mark.usefixtures("created_series_disabled")
def test_without_created_series_as_prometheus_client_is_told() -> None:
    ours, theirs = _ours(in_flight=0), _reference(in_flight=0)
    assert _created(theirs) == set()
    assert _created(ours) == set()
    assert _samples(ours) == _samples(theirs)


def _created(text: bytes) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name.endswith("_created")
    }


def test_one_series_per_method_route_and_status() -> None:
    metrics = HttpRequestMetrics()
    assert metrics.series("GET", "/health/live", 200) is metrics.series("GET", "/health/live", 200)
    assert metrics.series("GET", "/health/live", 200) is not metrics.series("HEAD", "/health/live", 200)
    series = metrics.series("GET", "/health/live", 200)
    series.observe(0.0005)
    series.observe(20.0)
    assert (series.count, series.total_seconds) == (2, 20.0005)
    assert series.bucket_counts[0] == 1 and series.bucket_counts[-1] == 1 and sum(series.bucket_counts) == 2
