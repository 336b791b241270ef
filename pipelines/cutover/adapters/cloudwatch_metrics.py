"""Canary metrics from CloudWatch: the target-group metrics of each color's ALB.

Each color has its own ALB and target group (infra/), so a color's traffic is the
`AWS/ApplicationELB` series with dimensions `LoadBalancer` (`app/<name>/<id>`, the ALB
ARN's suffix) and `TargetGroup` (`targetgroup/<name>/<id>`):

    requests  RequestCount               Sum
    errors    HTTPCode_Target_5XX_Count  Sum   (5xx the targets answered)
    p99       TargetResponseTime         p99   (ExtendedStatistics, seconds)

read with `GetMetricStatistics` (three calls per color). `HTTPCode_ELB_5XX_Count` (502/503/504
the ALB itself answers, e.g. when targets reset connections) is published per load balancer
only and is not counted here.

The window: ALB metrics have one-minute resolution, so the period is the window rounded up
to whole minutes and the query covers `[end - period, end)` with `end = now - lag_seconds`
(CloudWatch rounds the start down to the minute: one or two datapoints). Sums are added;
the p99 of several datapoints is their maximum, an upper bound of the window's p99 (if at
most 1% of each period's requests are slower than M, at most 1% of all are). ALB metrics
arrive about a minute late: with `lag_seconds=0` the newest minute may be missing or
partial, which shows as fewer requests (an inconclusive verdict), never as a false breach
of the error rate by itself; `lag_seconds=60` trades that for a verdict one minute older.

No datapoints means 0 (ALBs do not publish zero counts) and, for the p99, None. A failed
call raises `MetricsError`.

moto (the tests' CloudWatch) accepts `ExtendedStatistics` but returns datapoints without
them, so under moto the p99 is always None; `GetMetricData` with `Stat: "p99"` fails in
moto altogether (it serializes a None). That is why this source uses GetMetricStatistics,
and why the p99 parsing is tested with botocore's Stubber on AWS's response shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cutover.analysis import ColorMetrics, MetricsError
from cutover.model import COLORS, Color

NAMESPACE = "AWS/ApplicationELB"
REQUESTS = "RequestCount"
ERRORS = "HTTPCode_Target_5XX_Count"
LATENCY = "TargetResponseTime"
RESOLUTION_SECONDS = 60


def _resource_of(value: str) -> str:
    """The resource part of an ARN (`loadbalancer/app/x/1`), or `value` if not an ARN."""
    if value.startswith("arn:"):
        parts = value.split(":", 5)
        if len(parts) != 6:
            raise ValueError(f"not an ARN: {value!r}")
        return parts[5]
    return value


def load_balancer_dimension(value: str) -> str:
    """`app/<name>/<id>` from an ALB ARN or from that value itself."""
    resource = _resource_of(value).removeprefix("loadbalancer/")
    if not (resource.startswith("app/") and resource.count("/") == 2):
        raise ValueError(f"not an application load balancer ARN or app/<name>/<id>: {value!r}")
    return resource


def target_group_dimension(value: str) -> str:
    """`targetgroup/<name>/<id>` from a target group ARN or from that value itself."""
    resource = _resource_of(value)
    if not (resource.startswith("targetgroup/") and resource.count("/") == 2):
        raise ValueError(f"not a target group ARN or targetgroup/<name>/<id>: {value!r}")
    return resource


@dataclass(frozen=True)
class AlbTarget:
    """One color's ALB and target group: ARNs, or the dimension values themselves."""

    load_balancer: str
    target_group: str

    def dimensions(self) -> list[dict[str, str]]:
        return [
            {"Name": "LoadBalancer", "Value": load_balancer_dimension(self.load_balancer)},
            {"Name": "TargetGroup", "Value": target_group_dimension(self.target_group)},
        ]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CloudWatchMetrics:
    """A `MetricsSource` on CloudWatch. `client` is a boto3 CloudWatch client (built from
    `region` and the default credentials when not given)."""

    def __init__(
        self,
        targets: Mapping[Color, AlbTarget],
        *,
        client: Any | None = None,
        region: str | None = None,
        lag_seconds: float = 0.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        missing = [color for color in COLORS if color not in targets]
        if missing:
            raise ValueError(f"CloudWatch metrics need the ALB and target group of {' and '.join(missing)}")
        for target in targets.values():
            target.dimensions()  # refuse bad ARNs now
        if not (math.isfinite(lag_seconds) and lag_seconds >= 0):
            raise ValueError(f"lag_seconds must be >= 0 (got {lag_seconds!r})")
        self.targets = dict(targets)
        self.lag_seconds = lag_seconds
        self.clock = clock
        if client is None:
            import boto3  # here, not at import: `cutover rollback` never needs it

            client = boto3.client("cloudwatch", region_name=region)
        self.client = client

    def window(self, window_seconds: float) -> tuple[datetime, datetime, int]:
        """(start, end, period) of the query for a window of `window_seconds`."""
        if not (math.isfinite(window_seconds) and window_seconds > 0):
            raise ValueError(f"window must be > 0 seconds (got {window_seconds!r})")
        period = RESOLUTION_SECONDS * math.ceil(window_seconds / RESOLUTION_SECONDS)
        end = self.clock() - timedelta(seconds=self.lag_seconds)
        return end - timedelta(seconds=period), end, period

    def metrics(self, color: Color, window_seconds: float) -> ColorMetrics:
        start, end, period = self.window(window_seconds)
        dimensions = self.targets[color].dimensions()

        def datapoints(metric: str, **stat: list[str]) -> list[dict[str, Any]]:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                answer = self.client.get_metric_statistics(
                    Namespace=NAMESPACE,
                    MetricName=metric,
                    Dimensions=dimensions,
                    StartTime=start,
                    EndTime=end,
                    Period=period,
                    **stat,
                )
            except (ClientError, BotoCoreError) as exc:
                raise MetricsError(f"CloudWatch {metric} of {color}: {exc}") from exc
            points = answer.get("Datapoints", [])
            if not isinstance(points, list):
                raise MetricsError(f"unexpected CloudWatch answer for {metric} of {color}: {answer!r}")
            return points

        requests = sum(float(p.get("Sum", 0.0)) for p in datapoints(REQUESTS, Statistics=["Sum"]))
        errors = sum(float(p.get("Sum", 0.0)) for p in datapoints(ERRORS, Statistics=["Sum"]))
        p99s = [
            float(p["ExtendedStatistics"]["p99"])
            for p in datapoints(LATENCY, ExtendedStatistics=["p99"])
            if "p99" in p.get("ExtendedStatistics", {})
        ]
        p99s = [value for value in p99s if math.isfinite(value)]
        return ColorMetrics(requests=requests, errors=errors, p99_seconds=max(p99s) if p99s else None)
