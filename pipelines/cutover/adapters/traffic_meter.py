"""Traffic meters for `cutover retire`: when did a color last receive a request?

`AccessLogMeter` (`traffic_meter.type: envoy-access-log`) reads one JSON-lines access log
per color, as Envoy's file access log writes it with a `json_format`. Each line is one
JSON object; the request's arrival time is in the field `time_field` (default
`start_time`, Envoy's `%START_TIME%`), either

- an RFC 3339 / ISO 8601 string, e.g. `2026-05-04T12:00:01.250Z` (an offset is honoured;
  a time without one is taken as UTC), or
- a number: seconds since the epoch.

Blank lines, lines that are not JSON objects and lines without a readable time (a line
still being written, garbage) are skipped; but a log whose lines all lack a readable time
is an error (a wrong `time_field` must not look like silence). A missing or unreadable
file is an error too. An empty file means no request yet. The whole
file is read (the current file only: rotated files are not); one meter remembers across
its looks (`retire --wait`) the newest request it saw, and a log rotated or truncated
between two looks counts a request at the rotation (those written just before it are
gone). Envoy flushes file access logs every 10 s by default (bootstrap
`file_flush_interval`), hence the default lag.

`CloudWatchMeter` (`traffic_meter.type: cloudwatch`) reads the `RequestCount` Sum of the
color's ALB target group (namespace `AWS/ApplicationELB`, dimensions `LoadBalancer` and
`TargetGroup`, as cloudwatch_metrics builds them) in 60 s periods with GetMetricData; the
newest period with a Sum above 0 ends at most at its start + 60 s, which is what it
reports (capped at now). ALBs publish no zero counts and about a minute late, hence the
default lag of 60 s.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cutover.adapters.cloudwatch_metrics import NAMESPACE, REQUESTS, RESOLUTION_SECONDS, AlbTarget
from cutover.model import COLORS, Color
from cutover.ports import MeterError

DEFAULT_TIME_FIELD = "start_time"
ACCESS_LOG_LAG_SECONDS = 10.0
CLOUDWATCH_LAG_SECONDS = 60.0


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an RFC 3339 string or an epoch number (or its string); None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float: garbage
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:  # Envoy's %START_TIME(%s.%6f)% renders epoch seconds as a JSON string
        return parse_time(float(value))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def newest_request(lines: Any, time_field: str = DEFAULT_TIME_FIELD) -> tuple[float | None, int, int]:
    """(newest time, lines with a time, lines without one) over an iterable of log lines."""
    newest: float | None = None
    timed = untimed = 0
    for line in lines:
        text = line.strip()
        if not text:
            continue
        try:
            entry = json.loads(text)
        except ValueError:
            untimed += 1
            continue
        moment = parse_time(entry.get(time_field)) if isinstance(entry, dict) else None
        if moment is None:
            untimed += 1
            continue
        timed += 1
        newest = moment if newest is None else max(newest, moment)
    return newest, timed, untimed


class AccessLogMeter:
    """The newest request in each color's JSON-lines access log (see the module doc)."""

    def __init__(
        self,
        paths: Mapping[Color, Path],
        *,
        time_field: str = DEFAULT_TIME_FIELD,
        lag_seconds: float = ACCESS_LOG_LAG_SECONDS,
    ) -> None:
        missing = [color for color in COLORS if color not in paths]
        if missing:
            raise ValueError(f"an access log per color is needed (missing: {', '.join(missing)})")
        if not (math.isfinite(lag_seconds) and lag_seconds >= 0):
            raise ValueError(f"lag_seconds must be >= 0 (got {lag_seconds!r})")
        self.paths = {color: Path(paths[color]) for color in COLORS}
        self.time_field = time_field
        self._lag = float(lag_seconds)
        self._seen: dict[Color, _Seen] = {}  # per color: the file and its newest request at the last look

    @property
    def lag_seconds(self) -> float:
        return self._lag

    def last_request_at(self, color: Color, since: float) -> float | None:
        path = self.paths[color]
        try:
            with path.open(encoding="utf-8", errors="replace") as log:
                stat = os.fstat(log.fileno())
                newest, timed, untimed = newest_request(log, self.time_field)
        except OSError as exc:
            raise MeterError(f"cannot read {color}'s access log {path}: {exc}") from exc
        if timed == 0 and untimed > 0:
            raise MeterError(
                f"none of the {untimed} lines of {color}'s access log {path} has a readable "
                f"`{self.time_field}` (RFC 3339 or epoch seconds): check traffic_meter.time_field"
            )
        before = self._seen.get(color)
        if before is None and timed == 0:
            # Nothing in it at the first look: a fresh log, or one just rotated or truncated
            # (its requests gone with the old file). Its last change bounds them either way.
            newest = stat.st_mtime
        if before is not None:
            if (stat.st_dev, stat.st_ino) != before.file or stat.st_size < before.size:
                # rotated or truncated since the last look: requests written after that look
                # and before the rotation are gone, the file's change time bounds them
                newest = max(newest or 0.0, stat.st_mtime)
            if before.newest is not None:
                newest = max(newest or 0.0, before.newest)  # a request seen once stays seen
        self._seen[color] = _Seen((stat.st_dev, stat.st_ino), stat.st_size, newest)
        return newest if newest is not None and newest >= since else None


@dataclass(frozen=True)
class _Seen:
    """An access log at one look: which file, its size, the newest request seen so far."""

    file: tuple[int, int]
    size: int
    newest: float | None


class CloudWatchMeter:
    """The end of the newest minute in which the color's target group counted requests."""

    def __init__(
        self,
        targets: Mapping[Color, AlbTarget],
        *,
        client: Any,
        lag_seconds: float = CLOUDWATCH_LAG_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        missing = [color for color in COLORS if color not in targets]
        if missing:
            raise ValueError(f"the ALB and target group of {' and '.join(missing)} are needed")
        for target in targets.values():
            target.dimensions()  # refuse bad ARNs now
        if not (math.isfinite(lag_seconds) and lag_seconds >= 0):
            raise ValueError(f"lag_seconds must be >= 0 (got {lag_seconds!r})")
        self.targets = dict(targets)
        self.client = client
        self.clock = clock
        self._lag = float(lag_seconds)

    @property
    def lag_seconds(self) -> float:
        return self._lag

    def last_request_at(self, color: Color, since: float) -> float | None:
        from botocore.exceptions import BotoCoreError, ClientError

        now = self.clock()
        start = math.floor(since / RESOLUTION_SECONDS) * RESOLUTION_SECONDS
        end = (math.floor(now / RESOLUTION_SECONDS) + 1) * RESOLUTION_SECONDS  # the current minute too
        query = {
            "Id": "requests",
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": REQUESTS,
                    "Dimensions": self.targets[color].dimensions(),
                },
                "Period": RESOLUTION_SECONDS,
                "Stat": "Sum",
            },
            "ReturnData": True,
        }
        newest: float | None = None
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            try:
                answer = self.client.get_metric_data(
                    MetricDataQueries=[query],
                    StartTime=datetime.fromtimestamp(start, UTC),
                    EndTime=datetime.fromtimestamp(end, UTC),
                    ScanBy="TimestampDescending",
                    **extra,
                )
            except (ClientError, BotoCoreError) as exc:
                raise MeterError(f"CloudWatch {REQUESTS} of {color}: {exc}") from exc
            for result in answer.get("MetricDataResults", []):
                status = result.get("StatusCode", "Complete")
                if status not in ("Complete", "PartialData"):  # InternalError, Forbidden: cannot tell
                    raise MeterError(
                        f"CloudWatch {REQUESTS} of {color}: {status} {result.get('Messages') or ''}".rstrip()
                    )
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    if float(value) > 0:
                        moment = stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)
                        newest = moment if newest is None else max(newest, moment)
            token = answer.get("NextToken")
            if not token:
                break
        if newest is None:
            return None
        return min(newest + RESOLUTION_SECONDS, now)
