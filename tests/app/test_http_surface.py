"""What every response carries, and the metrics and OpenAPI endpoints."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ledger.middleware.headers import SECURITY_HEADERS
from tests.app.conftest import open_account


def test_every_response_carries_request_id_served_by_and_security_headers(ledger: httpx.Client) -> None:
    answers = (
        ledger.get("/health/live"),
        ledger.head("/health/live"),
        ledger.get("/health/ready"),
        ledger.get("/nowhere"),
        ledger.post("/transfers", json={}),
        ledger.get("/metrics"),
        ledger.post("/accounts", content=b"x", headers={"content-type": "text/plain"}),
    )
    for answer in answers:
        assert len(answer.headers["x-request-id"]) == 32
        # Each once: the server writes x-served-by and the security headers, the app does not.
        assert answer.headers.get_list("x-served-by") == ["blue/test-0"]
        assert len(answer.headers.get_list("x-request-id")) == 1
        for name, value in SECURITY_HEADERS:
            assert answer.headers.get_list(name.decode()) == [value.decode()]
        assert "x-xss-protection" not in answer.headers


def test_request_id_is_kept_when_sane_and_replaced_when_not(ledger: httpx.Client) -> None:
    assert (
        ledger.get("/health/live", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    )
    hostile = ledger.get("/health/live", headers={"x-request-id": 'x" injected=1'}).headers["x-request-id"]
    assert hostile != 'x" injected=1' and len(hostile) == 32


def test_metrics_count_requests_by_route_template_and_transfers(ledger: httpx.Client) -> None:
    account = open_account(ledger, 10)
    ledger.get(f"/accounts/{account}")
    ledger.get(f"/accounts/{account}")
    families = {f.name: f for f in text_string_to_metric_families(ledger.get("/metrics").text)}
    requests = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in families["ledger_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("GET", "/accounts/{account_id}", "200")] >= 2
    assert "ledger_http_request_duration_seconds" in families
    assert "ledger_http_requests_in_flight" in families
    pool = {s.labels["state"]: s.value for s in families["ledger_db_pool_connections"].samples}
    assert set(pool) == {"in_use", "idle", "max"} and pool["max"] == 10
    assert [s.value for s in families["ledger_draining"].samples] == [0.0]


def test_openapi_describes_the_api(ledger: httpx.Client) -> None:
    document = ledger.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    for path in (
        "/accounts",
        "/accounts/{account_id}",
        "/transfers",
        "/transfers/{transfer_id}",
        "/health/ready",
    ):
        assert path in document["paths"]
    schemas = document["components"]["schemas"]
    assert schemas["TransferCreate"]["required"] == ["from_account_id", "to_account_id", "amount"]
    header = document["paths"]["/transfers"]["post"]["parameters"][0]
    assert (header["name"], header["required"]) == ("Idempotency-Key", True)
