"""User input that used to reach a 500, and requests the HTTP parser refuses: each gets
a 4xx with the JSON error shape, against a real `ledger serve` and Postgres."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger.middleware.headers import SECURITY_HEADERS
from tests.app.conftest import StartLedger, open_account


def _statuses(client: httpx.Client, method: str, route: str) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    return {
        s.labels["status"]: s.value
        for s in families["ledger_http_requests"].samples
        if s.name.endswith("_total") and s.labels["method"] == method and s.labels["route"] == route
    }


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_nul_in_an_account_name_is_422(ledger: httpx.Client) -> None:
    answer = ledger.post("/accounts", json={"name": "a\x00b", "currency": "EUR"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert "NUL" in answer.json()["error"]["message"]


def test_a_credit_past_bigint_is_422_and_moves_nothing(ledger: httpx.Client) -> None:
    source, target = open_account(ledger, 2**62), open_account(ledger, 2**62)
    body = {"from_account_id": source, "to_account_id": target, "amount": 2**62}
    for _ in range(2):  # and again on the retry
        answer = ledger.post("/transfers", json=body, headers={"Idempotency-Key": "too-big"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "balance_out_of_range"
    assert ledger.get(f"/accounts/{source}").json()["balance"] == 2**62
    assert ledger.get(f"/accounts/{target}").json()["balance"] == 2**62


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_that_is_not_json_is_415(ledger: httpx.Client, content_type: str) -> None:
    answer = ledger.post(
        "/accounts",
        content=b'{"name": "x", "currency": "EUR"}',
        headers={"content-type": content_type},
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"]["code"] == "unsupported_media_type"


def test_json_content_types_are_accepted(ledger: httpx.Client) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8", "application/merge+json"):
        answer = ledger.post(
            "/accounts",
            content=b'{"name": "x", "currency": "EUR"}',
            headers={"content-type": content_type},
        )
        assert answer.status_code == 201, answer.text


def test_a_client_leaving_mid_body_is_counted_as_499_not_500(start_ledger: StartLedger) -> None:
    process = start_ledger()
    head = (
        b"POST /accounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\n\r\n"
    )
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", process.port), timeout=5) as sock:
            sock.sendall(head + b'{"name": "')
            time.sleep(0.2)
    with httpx.Client(base_url=process.url) as client:
        deadline = time.monotonic() + 5
        while (statuses := _statuses(client, "POST", "/accounts")).get("499", 0) < 3:
            assert time.monotonic() < deadline, statuses
            time.sleep(0.1)
        assert "500" not in statuses
    log = process.log_path.read_text()
    assert "unhandled error" not in log
    assert "Exception in ASGI application" not in log


@pytest.mark.parametrize(
    "head",
    [
        b"POST /accounts HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
        b"POST /accounts HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-evil: a\x00b\r\n\r\n",
    ],
    ids=["bad-content-length", "duplicate-content-length", "nul-in-header"],
)
def test_parser_refusals_carry_the_json_error_shape(start_ledger: StartLedger, head: bytes) -> None:
    process = start_ledger()
    raw = _raw(process.port, head)
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {
        name.strip().lower().decode(): value.strip().decode()
        for name, _, value in (line.partition(b":") for line in header_block.split(b"\r\n"))
    }
    assert status_line.startswith(b"HTTP/1.1 400"), raw[:200]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert len(headers["x-request-id"]) == 32
    assert headers["x-served-by"] == "blue/test-0"
    for name, value in SECURITY_HEADERS:
        assert headers[name.decode()] == value.decode()
    assert httpx.Response(400, content=body).json()["error"]["code"] == "bad_request"
