"""Text logs cannot be forged through a request: control characters are escaped."""

from __future__ import annotations

import json
import logging
import time

import httpx

from ledger.logs import JsonFormatter, TextFormatter
from ledger.middleware.tracing import TraceContext, current_trace
from tests.app.conftest import StartLedger


def test_text_formatter_escapes_control_characters_in_message_and_fields() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "GET %s 404",
            "args": ("/x\nforged\r\x1b[2J",),
            "levelname": "INFO",
            "name": "t",
            "path": "a\nb",
        }
    )
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "/x\\nforged\\r\\x1b[2J" in line and "path=a\\nb" in line


def test_text_formatter_escapes_bidirectional_controls() -> None:
    record = logging.makeLogRecord({"msg": "GET /x\u202etxt.exe 404", "levelname": "INFO", "name": "t"})
    line = TextFormatter().format(record)
    assert "\u202e" not in line and "/x\\u202etxt.exe" in line


def test_a_request_path_cannot_forge_a_text_log_line(start_ledger: StartLedger) -> None:
    process = start_ledger(LOG_FORMAT="text", PYTHONUNBUFFERED="1")
    forged = "12:00:00.000 ERROR   ledger: FORGED"
    with httpx.Client(base_url=process.url) as http:
        assert http.get("/accounts/x%0A" + forged.replace(" ", "%20")).status_code == 404
        assert http.get("/accounts/y%E2%80%AEgnp.exe").status_code == 404  # U+202E reverses the rest
    deadline = time.monotonic() + 10  # the access line is written after the answer is sent
    while not {"FORGED", "gnp.exe"} <= _words(process.log_path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    lines = process.log_path.read_text().splitlines()
    assert not [line for line in lines if line.startswith("12:00:00.000")], lines[-5:]
    assert any("FORGED" in line and "\\n12:00:00.000" in line for line in lines)
    assert "\u202e" not in process.log_path.read_text()
    assert any("y\\u202egnp.exe" in line for line in lines), lines[-5:]


def _words(text: str) -> set[str]:
    """What the log shows of the two requests so far."""
    return {word for word in ("FORGED", "gnp.exe") if word in text}


_TRACE = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "b7ad6b7169203331", "00f067aa0ba902b7", "01")


def test_json_records_in_a_request_carry_trace_and_span_ids_after_the_request_id() -> None:
    record = logging.makeLogRecord({"msg": "m", "levelname": "INFO", "name": "t", "request_id": "r1", "x": 1})
    token = current_trace.set(_TRACE)
    try:
        entry = json.loads(JsonFormatter().format(record))
        no_request_id = json.loads(JsonFormatter().format(logging.makeLogRecord({"msg": "m"})))
    finally:
        current_trace.reset(token)
    assert list(entry)[-4:] == ["request_id", "trace_id", "span_id", "x"]
    assert (entry["trace_id"], entry["span_id"]) == (_TRACE.trace_id, _TRACE.span_id)
    assert (no_request_id["trace_id"], no_request_id["span_id"]) == (_TRACE.trace_id, _TRACE.span_id)
    outside = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in outside and "span_id" not in outside


def test_text_records_in_a_request_carry_the_trace_id() -> None:
    record = logging.makeLogRecord({"msg": "m", "levelname": "INFO", "name": "t", "request_id": "r1"})
    token = current_trace.set(_TRACE)
    try:
        line = TextFormatter().format(record)
    finally:
        current_trace.reset(token)
    assert line.endswith(f"request_id=r1 trace_id={_TRACE.trace_id}")
    assert "trace_id" not in TextFormatter().format(record)
