"""`GET /health/live` answered without the router (app/ledger/middleware/liveness.py): the
same answer, headers and metrics as any other route, on a real `ledger serve`."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ledger.middleware.headers import SECURITY_HEADERS


def _live_count(metrics: str) -> float:
    """GET /health/live 200 in ledger_http_requests_total."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "ledger_http_requests_total"
        and sample.labels.get("route") == "/health/live"
        and sample.labels.get("method") == "GET"
        and sample.labels.get("status") == "200"
    )


def test_live_answers_like_every_route_and_is_counted(ledger: httpx.Client) -> None:
    before = _live_count(ledger.get("/metrics").text)
    live = ledger.get("/health/live", headers={"x-request-id": "probe-1"})
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert live.headers["content-type"] == "application/json"
    assert live.headers["x-request-id"] == "probe-1"
    assert live.headers["x-served-by"].startswith("blue/")
    for name, value in SECURITY_HEADERS:
        assert live.headers[name.decode()] == value.decode()
    generated = ledger.get("/health/live").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    head = ledger.head("/health/live")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "15"
    after = _live_count(ledger.get("/metrics").text)
    assert after - before == 2  # the two GETs, under the route's own label


def test_only_get_and_head_of_the_exact_path_are_shortcut(ledger: httpx.Client) -> None:
    assert ledger.post("/health/live").status_code == 405  # the router's answer, as before
    assert ledger.get("/health/livex").status_code == 404
    assert ledger.get("/health/live/").status_code == 404
    ready = ledger.get("/health/ready")
    assert ready.status_code == 200 and ready.headers["x-served-by"].startswith("blue/")
