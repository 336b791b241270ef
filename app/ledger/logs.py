"""Logging set-up: JSON lines for machines, plain text for people."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from ledger.middleware.tracing import current_trace

# C0 and C1 control characters, DEL, the Unicode line separators and the bidirectional
# controls: written as escapes in text logs, so a request path cannot start a forged line
# or reorder what a terminal shows (JSON logs escape the control characters already).
_CONTROL = (
    {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    | {
        0x0A: "\\n",
        0x0D: "\\r",
        0x09: "\\t",
        0x5C: "\\\\",  # a backslash too, so an escape in the output is always ours
        0x2028: "\\u2028",
        0x2029: "\\u2029",
    }
    | {c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)


def escape_control(text: str) -> str:
    """`text` with control characters written as backslash escapes."""
    return text.translate(_CONTROL)


# Attributes every LogRecord has; anything else passed through `extra=` is emitted as a field.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields, and
    for records emitted while a request runs, its `trace_id` and `span_id` (after the
    request id when the record has one)."""

    def __init__(self, static_fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._static = static_fields or {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        trace = current_trace.get()
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
                if key == "request_id" and trace is not None:
                    entry["trace_id"], entry["span_id"] = trace.trace_id, trace.span_id
        if trace is not None:
            entry.setdefault("trace_id", trace.trace_id)
            entry.setdefault("span_id", trace.span_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...` for a terminal, one line per record
    (control characters in the message and fields are escaped; only a traceback spans lines).
    Records emitted while a request runs end with its `trace_id` (the span id is left to
    the JSON logs)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = [
            f"{k}={escape_control(str(v))}"
            for k, v in record.__dict__.items()
            if k not in _RESERVED and not k.startswith("_")
        ]
        trace = current_trace.get()
        if trace is not None and "trace_id" not in record.__dict__:
            fields.append(f"trace_id={trace.trace_id}")
        extras = " ".join(fields)
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{time} {record.levelname:<7} {record.name}: {escape_control(record.getMessage())}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(log_format: str, level: str, static_fields: dict[str, Any] | None = None) -> None:
    """Send all logs (ledger's and uvicorn's) to stdout in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(static_fields) if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Peer probes run every few seconds: httpx's per-request INFO lines would drown the log.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
    # ledger writes its own access log with request ids; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
