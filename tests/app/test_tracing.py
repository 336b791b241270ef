"""W3C Trace Context: the parser alone, then a real `ledger serve` continuing a caller's trace
on every response and writing its trace and span ids into the JSON logs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.middleware.tracing import (
    MAX_TRACESTATE_MEMBERS,
    parse_traceparent,
    parse_tracestate,
    trace_context,
)
from tests.app.conftest import StartLedger

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACEPARENT = re.compile(r"^00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})$")

INVALID = [
    "",
    "garbage",
    VALID.upper(),  # uppercase hex is not HEXDIGLC
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID.upper()}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-0A",
    f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
    f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is forbidden
    f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
    f"00-{TRACE_ID}-{PARENT_ID}-011",
    f"00-{TRACE_ID}1-{PARENT_ID}-01",  # trace id too long
    f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",  # too short
    f"00-{TRACE_ID}-{PARENT_ID}1-01",
    f"00_{TRACE_ID}_{PARENT_ID}_01",
    f"0-{TRACE_ID}-{PARENT_ID}-01",
    f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-0g",
    f"cc-{TRACE_ID}-{PARENT_ID}-01x",  # a later version: flags followed by neither end nor dash
    f"cc-{TRACE_ID}-{PARENT_ID}-0",
    f"00-{TRACE_ID}-{PARENT_ID}-01" + "0" * 1000,  # too long
]

_hex = st.text(alphabet="0123456789abcdef", min_size=1, max_size=1)


def _ids(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdef", min_size=size, max_size=size).filter(
        lambda s: s != "0" * size
    )


# ---- the parser --------------------------------------------------------------------------


def test_a_valid_version_00_traceparent_parses() -> None:
    assert parse_traceparent(VALID) == (TRACE_ID, PARENT_ID, "01")
    assert parse_traceparent(f" {VALID}\t") == (TRACE_ID, PARENT_ID, "01")  # optional whitespace
    assert parse_traceparent(f"00-{TRACE_ID}-{PARENT_ID}-00") == (TRACE_ID, PARENT_ID, "00")


@pytest.mark.parametrize("value", INVALID)
def test_an_invalid_traceparent_is_refused(value: str) -> None:
    assert parse_traceparent(value) is None


def test_a_later_version_is_read_leniently_keeping_only_the_sampled_bit() -> None:
    assert parse_traceparent(f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be") == (
        TRACE_ID,
        PARENT_ID,
        "01",
    )
    assert parse_traceparent(f"01-{TRACE_ID}-{PARENT_ID}-09") == (TRACE_ID, PARENT_ID, "01")
    assert parse_traceparent(f"01-{TRACE_ID}-{PARENT_ID}-02") == (TRACE_ID, PARENT_ID, "00")


@given(_ids(32), _ids(16), _hex, _hex)
def test_every_valid_traceparent_round_trips(trace_id: str, parent_id: str, f1: str, f2: str) -> None:
    assert parse_traceparent(f"00-{trace_id}-{parent_id}-{f1}{f2}") == (trace_id, parent_id, f1 + f2)


@given(st.text(max_size=80) | st.from_regex(r"\A[0-9a-fA-F]{2}-[0-9a-fA-F-]{30,60}\Z"))
def test_whatever_parses_is_a_well_formed_nonzero_context(value: str) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:
        trace_id, parent_id, flags = parsed
        assert TRACEPARENT.match(f"00-{trace_id}-{parent_id}-{flags}"), value


@given(
    _ids(32),
    _ids(16),
    st.sampled_from([i for i in range(55) if i not in (2, 35, 52)]),
    st.sampled_from("ABCDEF"),
)
def test_one_uppercase_digit_invalidates(trace_id: str, parent_id: str, where: int, upper: str) -> None:
    value = f"00-{trace_id}-{parent_id}-01"
    assert parse_traceparent(value) is not None
    assert parse_traceparent(value[:where] + upper + value[where + 1 :]) is None


def test_tracestate_is_kept_trimmed_and_joined() -> None:
    assert parse_tracestate(["congo=t61rcWkgMzE"]) == "congo=t61rcWkgMzE"
    assert parse_tracestate(["rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", " ,tenant@vendor=x y"]) == (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,tenant@vendor=x y"
    )
    members = [f"k{i}=v" for i in range(MAX_TRACESTATE_MEMBERS)]
    assert parse_tracestate([",".join(members)]) == ",".join(members)


@pytest.mark.parametrize(
    "values",
    [
        [",".join(f"k{i}=v" for i in range(MAX_TRACESTATE_MEMBERS + 1))],  # 33 members
        ["a=" + "x" * 255, "b=" + "x" * 255],  # 515 characters
        ["a=1,a=2"],  # a key twice
        ["a=1", "a=2"],
        ["Upper=1"],
        ["a=1,novalue"],
        ["a=x,y"],
        ["a=b=c"],
        ["a=\x00"],
        ["a=" + "x" * 257],
        [""],
        [" , "],
    ],
)
def test_tracestate_out_of_bounds_or_malformed_is_dropped(values: list[str]) -> None:
    assert parse_tracestate(values) == ""


def test_a_context_continues_a_valid_parent_and_starts_over_otherwise() -> None:
    entropy = bytes(range(1, 25))
    continued = trace_context([VALID], ["a=1"], entropy)
    assert (continued.trace_id, continued.parent_id, continued.flags) == (TRACE_ID, PARENT_ID, "01")
    assert continued.span_id == entropy[:8].hex() and continued.tracestate == "a=1"
    assert continued.traceparent() == f"00-{TRACE_ID}-{entropy[:8].hex()}-01"
    for traceparent in ([], ["garbage"], [VALID, VALID]):  # none, malformed, two of them
        fresh = trace_context(traceparent, ["a=1"], entropy)
        assert fresh.trace_id == entropy[8:].hex() and fresh.parent_id == "" and fresh.tracestate == ""
        assert TRACEPARENT.match(fresh.traceparent())


# ---- a real ledger -------------------------------------------------------------------------


def _response_traceparent(answer: httpx.Response) -> tuple[str, str, str]:
    values = answer.headers.get_list("traceparent")
    assert len(values) == 1, answer.headers
    match = TRACEPARENT.match(values[0])
    assert match, values
    return match.group(1), match.group(2), match.group(3)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health/live", 200),  # answered by the liveness shortcut
        ("HEAD", "/health/live", 200),
        ("GET", "/health/ready", 200),
        ("GET", "/accounts/00000000-0000-0000-0000-000000000000", 404),  # an error response
        ("GET", "/no/such/route", 404),
        ("POST", "/transfers", 422),
    ],
)
def test_every_response_continues_the_callers_trace(
    ledger: httpx.Client, method: str, path: str, status: int
) -> None:
    for flags in ("01", "00"):
        sent = f"00-{TRACE_ID}-{PARENT_ID}-{flags}"
        answer = ledger.request(method, path, headers={"traceparent": sent, "Idempotency-Key": "k-1"})
        assert answer.status_code == status
        trace_id, parent_id, returned_flags = _response_traceparent(answer)
        assert (trace_id, returned_flags) == (TRACE_ID, flags)
        assert parent_id != PARENT_ID  # this server's own span


def test_each_request_gets_a_span_of_its_own(ledger: httpx.Client) -> None:
    spans = {
        _response_traceparent(ledger.get("/health/live", headers={"traceparent": VALID}))[1] for _ in range(5)
    }
    assert len(spans) == 5


@pytest.mark.parametrize("value", INVALID)
def test_a_malformed_traceparent_starts_a_new_trace_and_is_never_echoed(
    ledger: httpx.Client, value: str
) -> None:
    answer = ledger.get("/health/live", headers={"traceparent": value, "tracestate": "a=1"})
    trace_id, parent_id, flags = _response_traceparent(answer)
    assert trace_id != TRACE_ID and trace_id.upper() != TRACE_ID.upper() and parent_id != PARENT_ID
    assert flags == "00"
    assert "tracestate" not in answer.headers  # no valid parent: its state goes too


def test_two_traceparent_headers_start_a_new_trace(ledger: httpx.Client) -> None:
    answer = ledger.get("/health/live", headers=[("traceparent", VALID), ("traceparent", VALID)])
    assert _response_traceparent(answer)[0] != TRACE_ID


def test_without_a_traceparent_each_request_starts_a_trace(ledger: httpx.Client) -> None:
    traces = {_response_traceparent(ledger.get("/health/live"))[0] for _ in range(5)}
    assert len(traces) == 5


def test_tracestate_is_passed_through_within_bounds(ledger: httpx.Client) -> None:
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    answer = ledger.get("/health/ready", headers={"traceparent": VALID, "tracestate": state})
    assert answer.headers["tracestate"] == state
    too_many = ",".join(f"k{i}=v" for i in range(MAX_TRACESTATE_MEMBERS + 1))
    answer = ledger.get("/health/ready", headers={"traceparent": VALID, "tracestate": too_many})
    assert "tracestate" not in answer.headers and _response_traceparent(answer)[0] == TRACE_ID
    answer = ledger.get("/health/ready", headers={"traceparent": VALID, "tracestate": "a=" + "x" * 600})
    assert "tracestate" not in answer.headers


def _log_entries(path: Path, request_id: str, count: int) -> list[dict[str, Any]]:
    """The JSON log entries of one request, once `count` of them are written (the access
    line is written after the answer is sent)."""
    deadline = time.monotonic() + 10
    while True:
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
        mine = [entry for entry in entries if entry.get("request_id") == request_id]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def test_the_access_log_line_carries_trace_and_span_ids(start_ledger: StartLedger) -> None:
    process = start_ledger()
    with httpx.Client(base_url=process.url) as http:
        answer = http.get("/accounts/00000000-0000-0000-0000-000000000000", headers={"traceparent": VALID})
        other = http.get("/accounts/00000000-0000-0000-0000-000000000000")
    _, span_id, _ = _response_traceparent(answer)
    (access,) = _log_entries(process.log_path, answer.headers["x-request-id"], 1)
    assert access["logger"] == "ledger.access" and access["status"] == 404
    assert (access["trace_id"], access["span_id"]) == (TRACE_ID, span_id)
    assert list(access)[list(access).index("request_id") + 1 :][:2] == ["trace_id", "span_id"]
    (unrelated,) = _log_entries(process.log_path, other.headers["x-request-id"], 1)
    assert unrelated["trace_id"] == _response_traceparent(other)[0] != TRACE_ID


def test_an_error_log_line_carries_trace_and_span_ids(start_ledger: StartLedger, database_url: str) -> None:
    """A statement that waits on a lock past the statement timeout: the 503's warning line
    and its access line both name the caller's trace and this request's span."""
    process = start_ledger(DB_STATEMENT_TIMEOUT_SECONDS="0.2")
    with httpx.Client(base_url=process.url) as http:
        created = http.post("/accounts", json={"name": "a", "currency": "EUR", "opening_balance": 1})
        assert created.status_code == 201, created.text
        answer = asyncio.run(_while_accounts_are_locked(database_url, process.url, created.json()["id"]))
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "database_timeout", answer.text
    _, span_id, _ = _response_traceparent(answer)
    entries = _log_entries(process.log_path, answer.headers["x-request-id"], 2)
    assert {entry["logger"] for entry in entries} == {"ledger.errors", "ledger.access"}, entries
    for entry in entries:
        assert (entry["trace_id"], entry["span_id"]) == (TRACE_ID, span_id), entry


async def _while_accounts_are_locked(database_url: str, url: str, account_id: str) -> httpx.Response:
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                return await http.get(f"/accounts/{account_id}", headers={"traceparent": VALID})
    finally:
        await connection.close()


def test_text_logs_carry_the_trace_id(start_ledger: StartLedger) -> None:
    process = start_ledger(LOG_FORMAT="text", PYTHONUNBUFFERED="1")
    with httpx.Client(base_url=process.url) as http:
        answer = http.get("/accounts/00000000-0000-0000-0000-000000000000", headers={"traceparent": VALID})
    request_id = answer.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while request_id not in process.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = [line for line in process.log_path.read_text().splitlines() if request_id in line]
    assert f"trace_id={TRACE_ID}" in line
