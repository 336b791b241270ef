"""Canary metrics from the Prometheus HTTP API (`GET /api/v1/query`) over ledger's metrics.

ledger exports `ledger_http_requests_total{method, route, status}` and the histogram
`ledger_http_request_duration_seconds{method, route}` (app/ledger/metrics.py). Neither
carries the color: a process knows its `COLOR` but does not label its metrics with it.
The color comes from the scrape: each color's job (or target group) gets a `color` target
label, e.g.

    scrape_configs:
      - job_name: ledger-blue
        static_configs: [{targets: ["10.0.1.5:8000"], labels: {color: blue}}]
      - job_name: ledger-green
        static_configs: [{targets: ["10.0.2.7:8000"], labels: {color: green}}]

(on Kubernetes, a relabel of the pod label `app.kubernetes.io/instance` or `color` into
`color` does the same). `selector` is the matcher template that picks one color's series,
`%s` standing for the color: `{color="%s"}` by default, or e.g.
`{color="%s",namespace="ledger-prod"}`.

Probes and scrapes (`/health/...`, `/metrics`) are excluded by their `route` label: they
come from the kubelet and Prometheus, not from users, and would dilute the 5xx share. The
queries, for a 60 s window and green:

    requests  sum(increase(ledger_http_requests_total{color="green",route!~"/health/.*|/metrics"}[60s]))
    errors    sum(increase(ledger_http_requests_total{color="green",route!~"/health/.*|/metrics",status=~"5.."}[60s]))
    p99       histogram_quantile(0.99, sum by (le) (rate(
                  ledger_http_request_duration_seconds_bucket{color="green",route!~"/health/.*|/metrics"}[60s])))

An empty answer counts as 0 requests / 0 errors; a p99 that is empty or NaN (no requests
in the window) is None. Note that `increase()` extrapolates to the window's edges (counts
are floats, not exact) and, like every Prometheus counter function, cannot count what a
series held at its first scrape: the first 5xx of a new `status` series within one
scrape interval are missed. With a 15 s scrape interval keep windows of a minute or more.

Standard library only (urllib), no httpx: `cutover rollback` imports this module's
neighbours at 3 a.m. and every import is on the clock.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from cutover.analysis import ColorMetrics, MetricsError
from cutover.model import Color

REQUESTS_METRIC = "ledger_http_requests_total"
DURATION_METRIC = "ledger_http_request_duration_seconds"
DEFAULT_SELECTOR = '{color="%s"}'
DEFAULT_EXCLUDED_ROUTES = "/health/.*|/metrics"


@dataclass(frozen=True)
class Queries:
    requests: str
    errors: str
    p99: str


def promql_duration(seconds: float) -> str:
    """A PromQL range duration: `60s`, or `1500ms` when not a whole second."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"window must be > 0 seconds (got {seconds!r})")
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def build_queries(
    color: Color,
    window_seconds: float,
    selector: str = DEFAULT_SELECTOR,
    excluded_routes: str | None = DEFAULT_EXCLUDED_ROUTES,
) -> Queries:
    """The three PromQL queries for one color (see the module doc)."""
    template = selector.strip()
    if not (template.startswith("{") and template.endswith("}")) or template.count("%s") != 1:
        raise ValueError(f'selector must look like {{color="%s"}} with one %s (got {selector!r})')
    matchers = [template[1:-1].strip() % color]
    if excluded_routes:
        matchers.append(f'route!~"{excluded_routes}"')
    base = ",".join(m for m in matchers if m)
    window = promql_duration(window_seconds)
    return Queries(
        requests=f"sum(increase({REQUESTS_METRIC}{{{base}}}[{window}]))",
        errors=f'sum(increase({REQUESTS_METRIC}{{{base},status=~"5.."}}[{window}]))',
        p99=f"histogram_quantile(0.99, sum by (le) (rate({DURATION_METRIC}_bucket{{{base}}}[{window}])))",
    )


class PrometheusMetrics:
    """A `MetricsSource` on the Prometheus HTTP API at `base_url` (e.g. http://prometheus:9090)."""

    def __init__(
        self,
        base_url: str,
        selector: str = DEFAULT_SELECTOR,
        *,
        excluded_routes: str | None = DEFAULT_EXCLUDED_ROUTES,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must start with http:// or https:// (got {base_url!r})")
        build_queries("blue", 60.0, selector, excluded_routes)  # refuse a bad selector now
        self.base_url = base_url.rstrip("/")
        self.selector = selector
        self.excluded_routes = excluded_routes
        self.timeout = timeout
        self.headers = dict(headers or {})

    def queries(self, color: Color, window_seconds: float) -> Queries:
        return build_queries(color, window_seconds, self.selector, self.excluded_routes)

    def metrics(self, color: Color, window_seconds: float) -> ColorMetrics:
        queries = self.queries(color, window_seconds)
        requests = self.query(queries.requests)
        errors = self.query(queries.errors)
        p99 = self.query(queries.p99)
        return ColorMetrics(
            requests=0.0 if requests is None else requests,
            errors=0.0 if errors is None else errors,
            p99_seconds=p99,
        )

    def query(self, promql: str) -> float | None:
        """The value of an instant query that yields at most one sample (None when it
        yields none, or NaN/Inf). Raises MetricsError on any failure."""
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        request = urllib.request.Request(url, headers={"Accept": "application/json", **self.headers})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                body = answer.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise MetricsError(f"Prometheus answered {exc.code} to {promql!r}: {_error_of(detail)}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MetricsError(f"Prometheus at {self.base_url} unreachable: {reason}") from exc
        return _value_of(body, promql)


def _error_of(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    if isinstance(parsed, dict) and "error" in parsed:
        return f"{parsed.get('errorType', 'error')}: {parsed['error']}"
    return body


def _value_of(body: bytes, promql: str) -> float | None:
    try:
        parsed = json.loads(body)
        if parsed.get("status") != "success":
            raise MetricsError(f"Prometheus refused {promql!r}: {_error_of(body.decode('utf-8', 'replace'))}")
        data = parsed["data"]
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            samples = [result[1]]
        elif kind == "vector":
            samples = [item["value"][1] for item in result]
        else:
            raise MetricsError(f"Prometheus answered a {kind} to {promql!r}; expected a vector")
        # Prometheus sends numbers as strings, "NaN" and "+Inf" included.
        values = [float(sample) for sample in samples]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise MetricsError(f"unexpected answer from Prometheus to {promql!r}: {body[:200]!r}") from exc
    if not values:
        return None
    if len(values) > 1:
        raise MetricsError(
            f"{promql!r} yielded {len(values)} series; expected one (is the query aggregated?)"
        )
    return values[0] if math.isfinite(values[0]) else None
