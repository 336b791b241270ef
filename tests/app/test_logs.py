"""Text logs cannot be forged through a request: control characters are escaped."""

from __future__ import annotations

import logging
import time

import httpx

from ledger.logs import TextFormatter
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
