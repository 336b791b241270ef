"""The Prometheus source against a real Prometheus (Debian's `prometheus` package) scraping
two real `ledger serve` processes, one per color, every second.

Green answers 5xx to a share of its requests the way a real deployment does: its database
stops accepting connections (`ALLOW_CONNECTIONS false` and its sessions terminated), so
ledger answers 503/500 while blue, on its own database, keeps answering 2xx. The app is not
changed for the test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from cutover.adapters.prometheus_metrics import PrometheusMetrics, build_queries, promql_duration
from cutover.analysis import CanaryAnalysis, ColorMetrics, MetricsError, Thresholds
from cutover.local.database import migrate_database
from cutover.local.ledger_process import LedgerProcess
from cutover.local.ports import free_port
from cutover.local.postgres import EmbeddedPostgres
from tests.pipelines.metrics_fixtures import INSTALL, PROMETHEUS, PrometheusServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

OK_REQUESTS = 240  # per color, measured
FAILING_REQUESTS = 60  # green only, after its database is cut
WINDOW = 60.0


@dataclass
class Scenario:
    prometheus: PrometheusServer
    source: PrometheusMetrics
    sent: dict[str, int]  # requests sent per color (measured part, warm-up excluded)
    statuses: dict[str, dict[int, int]]  # what the clients saw, per color


def _traffic(client: httpx.Client, count: int, statuses: dict[int, int]) -> None:
    """`count` user requests: account creations and reads, one after the other."""
    account: str | None = None
    for i in range(count):
        if i % 2 == 0 or account is None:
            answer = client.post(
                "/accounts", json={"name": f"a{i}", "currency": "EUR", "opening_balance": 100}
            )
            if answer.status_code == 201:
                account = str(answer.json()["id"])
        else:
            answer = client.get(f"/accounts/{account}")
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1


def _cut_database(postgres: EmbeddedPostgres, name: str) -> None:
    """The database refuses new connections and loses its open ones."""
    postgres.psql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    postgres.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


@pytest.fixture(scope="module")
def scenario(postgres: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"{PROMETHEUS} is missing: install Debian's prometheus package ({INSTALL})")
    workdir = tmp_path_factory.mktemp("prometheus")
    databases = {color: f"prom_{color}_{uuid.uuid4().hex[:8]}" for color in ("blue", "green")}
    ledgers: dict[str, LedgerProcess] = {}
    prometheus: PrometheusServer | None = None
    try:
        for color, name in databases.items():
            url = postgres.create_database(name)
            migrate_database(url)
            env = {"DATABASE_URL": url, "COLOR": color, "LOG_FORMAT": "json", "INSTANCE_ID": f"prom-{color}"}
            ledgers[color] = LedgerProcess(env, workdir / f"ledger-{color}.log").start(timeout=30)
        prometheus = PrometheusServer(workdir, {c: f"127.0.0.1:{p.port}" for c, p in ledgers.items()})
        prometheus.start()
        prometheus.wait_for('up{color="blue"} == 1 and on() up{color="green"} == 1')

        statuses: dict[str, dict[int, int]] = {"blue": {}, "green": {}}
        clients = {c: httpx.Client(base_url=p.url, timeout=5.0) for c, p in ledgers.items()}
        try:
            # Warm-up: a counter's first scraped value is invisible to increase(), so every
            # (route, status) series the test counts exists before the measured traffic.
            warmup: dict[str, dict[int, int]] = {"blue": {}, "green": {}}
            for color, client in clients.items():
                _traffic(client, 4, warmup[color])
            prometheus.wait_scraped(time.time(), scrapes=2)
            for color, client in clients.items():
                _traffic(client, OK_REQUESTS, statuses[color])
            _cut_database(postgres, databases["green"])
            _traffic(clients["green"], 4, warmup["green"])
            prometheus.wait_scraped(time.time(), scrapes=2)
            _traffic(clients["green"], FAILING_REQUESTS, statuses["green"])
        finally:
            for client in clients.values():
                client.close()
        prometheus.wait_scraped(time.time(), scrapes=2)  # the last requests are in Prometheus
        yield Scenario(
            prometheus=prometheus,
            source=PrometheusMetrics(prometheus.url),
            sent={"blue": OK_REQUESTS, "green": OK_REQUESTS + FAILING_REQUESTS},
            statuses=statuses,
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
        for process in ledgers.values():
            process.kill()
        if "green" in databases:
            postgres.psql(f'ALTER DATABASE "{databases["green"]}" ALLOW_CONNECTIONS true')


def _five_xx(statuses: dict[int, int]) -> int:
    return sum(n for status, n in statuses.items() if status >= 500)


def test_the_traffic_is_what_the_test_says(scenario: Scenario) -> None:
    assert _five_xx(scenario.statuses["blue"]) == 0, scenario.statuses
    assert _five_xx(scenario.statuses["green"]) == FAILING_REQUESTS, scenario.statuses
    # The color comes from the scrape config's target label, not from the app.
    series = scenario.prometheus.query('ledger_http_requests_total{route="/accounts"}')
    assert {s["metric"]["color"] for s in series} == {"blue", "green"}  # type: ignore[index]


def test_the_source_counts_requests_errors_and_p99_per_color(scenario: Scenario) -> None:
    blue = scenario.source.metrics("blue", WINDOW)
    green = scenario.source.metrics("green", WINDOW)
    # increase() extrapolates to the window's edges (by up to half a scrape interval at each
    # end of a series, which is a lot for the 5xx series that lives a few seconds): close
    # to, not exactly, what was sent; the warm-up requests fall inside the window too.
    assert scenario.sent["blue"] * 0.9 <= blue.requests <= (scenario.sent["blue"] + 4) * 1.3, blue
    assert scenario.sent["green"] * 0.9 <= green.requests <= (scenario.sent["green"] + 8) * 1.3, green
    assert blue.errors == 0.0
    # The 5xx series lives a few seconds: half a scrape interval of extrapolation at each
    # end is a larger share of it (a fresh-clone run measured 83.9 for 60 sent).
    assert FAILING_REQUESTS * 0.9 <= green.errors <= (FAILING_REQUESTS + 4) * 1.5, green
    assert 0.15 <= green.error_rate <= 0.3, green
    for color in (blue, green):
        assert color.p99_seconds is not None
        assert 0.0 < color.p99_seconds < 2.5


def test_probes_and_scrapes_are_not_counted(scenario: Scenario) -> None:
    window = promql_duration(WINDOW)
    scrapes = scenario.prometheus.query(
        f'sum(increase(ledger_http_requests_total{{color="blue",route="/metrics"}}[{window}]))'
    )
    probes = scenario.prometheus.query('sum(ledger_http_requests_total{color="blue",route=~"/health/.*"})')
    everything = scenario.prometheus.query(
        f'sum(increase(ledger_http_requests_total{{color="blue"}}[{window}]))'
    )
    counted = scenario.source.metrics("blue", WINDOW).requests
    # Prometheus scraped /metrics every second and LedgerProcess polled readiness: both are
    # in the series, neither in the source's count.
    assert float(scrapes[0]["value"][1]) > 3  # type: ignore[index]
    assert float(probes[0]["value"][1]) > 0  # type: ignore[index]
    assert counted < float(everything[0]["value"][1])  # type: ignore[index]
    assert counted <= (scenario.sent["blue"] + 4) * 1.3


def test_canary_analysis_flags_greens_errors(scenario: Scenario) -> None:
    verdict = CanaryAnalysis(scenario.source, Thresholds(window_seconds=WINDOW)).check("green", "blue")
    assert verdict.conclusive and not verdict.passed, verdict
    assert verdict.reason.startswith("green 5xx share "), verdict.reason
    assert "vs blue 0.0%" in verdict.reason and "> 1.0 allowed" in verdict.reason, verdict.reason
    assert verdict.canary is not None and verdict.canary.errors > 0


def test_canary_analysis_passes_blue_against_green(scenario: Scenario) -> None:
    # Blue as the canary is better than green: a negative difference passes.
    verdict = CanaryAnalysis(scenario.source, Thresholds(window_seconds=WINDOW)).check("blue", "green")
    assert verdict.passed and verdict.conclusive, verdict


def test_too_few_requests_is_no_verdict(scenario: Scenario) -> None:
    thresholds = Thresholds(min_requests=100_000, window_seconds=WINDOW)
    verdict = CanaryAnalysis(scenario.source, thresholds).check("green", "blue")
    assert verdict.passed and not verdict.conclusive, verdict
    assert "fewer than the 100000 needed" in verdict.reason


def test_a_color_without_series_has_no_requests_and_no_p99(scenario: Scenario) -> None:
    source = PrometheusMetrics(scenario.prometheus.url, '{color="%s",job="no-such-job"}')
    assert source.metrics("green", WINDOW) == ColorMetrics(requests=0.0, errors=0.0, p99_seconds=None)


def test_a_refused_query_raises_metrics_error(scenario: Scenario) -> None:
    with pytest.raises(MetricsError, match="Prometheus answered 400"):
        scenario.source.query("sum(rate(ledger_http_requests_total[")
    with pytest.raises(MetricsError, match="yielded 2 series"):
        scenario.source.query("ledger_ready")


def test_an_unreachable_prometheus_raises_metrics_error() -> None:
    source = PrometheusMetrics(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(MetricsError, match="unreachable"):
        source.metrics("green", WINDOW)


def test_queries_are_built_from_the_selector() -> None:
    queries = build_queries("green", 90, '{color="%s",namespace="prod"}')
    selector = 'color="green",namespace="prod",route!~"/health/.*|/metrics"'
    assert queries.requests == f"sum(increase(ledger_http_requests_total{{{selector}}}[90s]))"
    assert queries.errors == f'sum(increase(ledger_http_requests_total{{{selector},status=~"5.."}}[90s]))'
    assert queries.p99 == (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(ledger_http_request_duration_seconds_bucket{{{selector}}}[90s])))"
    )
    assert build_queries("blue", 1.5, excluded_routes=None).requests == (
        'sum(increase(ledger_http_requests_total{color="blue"}[1500ms]))'
    )
    with pytest.raises(ValueError, match="selector"):
        PrometheusMetrics("http://127.0.0.1:9090", 'color="%s"')
    with pytest.raises(ValueError, match="http"):
        PrometheusMetrics("127.0.0.1:9090")
