"""The CloudWatch source: ALB target-group metrics put into moto's CloudWatch and read back;
the p99 (which moto does not compute) and the exact request against botocore's Stubber."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cutover.adapters.cloudwatch_metrics import (
    AlbTarget,
    CloudWatchMetrics,
    load_balancer_dimension,
    target_group_dimension,
)
from cutover.analysis import CanaryAnalysis, ColorMetrics, MetricsError, Thresholds
from cutover.model import Color

ACCOUNT = "arn:aws:elasticloadbalancing:eu-west-1:123456789012"
TARGETS: dict[Color, AlbTarget] = {
    "blue": AlbTarget(
        f"{ACCOUNT}:loadbalancer/app/ledger-blue/50dc6c495c0c9188",
        f"{ACCOUNT}:targetgroup/ledger-blue/73e2d6bc24d8a067",
    ),
    "green": AlbTarget("app/ledger-green/6a1b2c3d4e5f6071", "targetgroup/ledger-green/8f9e0d1c2b3a4958"),
}


def dims(color: Color) -> list[dict[str, str]]:
    return TARGETS[color].dimensions()


def put(client: Any, color: Color, metric: str, value: float, at: datetime, unit: str = "Count") -> None:
    client.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[
            {"MetricName": metric, "Dimensions": dims(color), "Value": value, "Unit": unit, "Timestamp": at}
        ],
    )


@pytest.fixture
def cloudwatch(aws: None) -> Any:
    return boto3.client("cloudwatch", region_name="eu-west-1")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_dimensions_from_arns_or_values() -> None:
    assert load_balancer_dimension(f"{ACCOUNT}:loadbalancer/app/a/1") == "app/a/1"
    assert load_balancer_dimension("app/a/1") == "app/a/1"
    assert target_group_dimension(f"{ACCOUNT}:targetgroup/t/2") == "targetgroup/t/2"
    assert dims("blue") == [
        {"Name": "LoadBalancer", "Value": "app/ledger-blue/50dc6c495c0c9188"},
        {"Name": "TargetGroup", "Value": "targetgroup/ledger-blue/73e2d6bc24d8a067"},
    ]
    for bad in (f"{ACCOUNT}:loadbalancer/net/n/1", "targetgroup/t/2", "app/a"):
        with pytest.raises(ValueError, match="load balancer"):
            load_balancer_dimension(bad)
    with pytest.raises(ValueError, match="target group"):
        target_group_dimension("app/a/1")


def test_refuses_incomplete_config(cloudwatch: Any) -> None:
    with pytest.raises(ValueError, match="of green"):
        CloudWatchMetrics({"blue": TARGETS["blue"]}, client=cloudwatch)
    with pytest.raises(ValueError, match="target group"):
        CloudWatchMetrics({**TARGETS, "green": AlbTarget("app/g/1", "tg-green")}, client=cloudwatch)
    with pytest.raises(ValueError, match="lag_seconds"):
        CloudWatchMetrics(TARGETS, client=cloudwatch, lag_seconds=-1)


def test_reads_each_colors_sums_from_moto(cloudwatch: Any, now: datetime) -> None:
    for at in (now - timedelta(seconds=40), now - timedelta(seconds=10)):
        put(cloudwatch, "green", "RequestCount", 200, at)
        put(cloudwatch, "green", "HTTPCode_Target_5XX_Count", 10, at)
        put(cloudwatch, "blue", "RequestCount", 900, at)
    put(cloudwatch, "blue", "HTTPCode_Target_5XX_Count", 1, now - timedelta(seconds=5))
    put(cloudwatch, "green", "TargetResponseTime", 0.25, now - timedelta(seconds=5), unit="Seconds")
    source = CloudWatchMetrics(TARGETS, client=cloudwatch, clock=lambda: now)
    # moto: ExtendedStatistics accepted, but datapoints come back without them -> no p99.
    assert source.metrics("green", 60) == ColorMetrics(requests=400, errors=20, p99_seconds=None)
    assert source.metrics("blue", 60) == ColorMetrics(requests=1800, errors=1, p99_seconds=None)


def test_counts_only_the_window_and_the_colors_own_target_group(cloudwatch: Any, now: datetime) -> None:
    put(cloudwatch, "green", "RequestCount", 100, now - timedelta(seconds=30))
    put(cloudwatch, "green", "RequestCount", 5000, now - timedelta(seconds=600))  # long before
    other = [
        {"Name": "LoadBalancer", "Value": "app/ledger-green/6a1b2c3d4e5f6071"},
        {"Name": "TargetGroup", "Value": "targetgroup/someone-else/1111111111111111"},
    ]
    cloudwatch.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[{"MetricName": "RequestCount", "Dimensions": other, "Value": 7000, "Timestamp": now}],
    )
    source = CloudWatchMetrics(TARGETS, client=cloudwatch, clock=lambda: now)
    assert source.metrics("green", 60).requests == 100
    # A 5-minute window reaches the old datapoint.
    assert source.metrics("green", 601).requests == 5100


def test_lag_moves_the_window_back(cloudwatch: Any, now: datetime) -> None:
    put(cloudwatch, "green", "RequestCount", 100, now - timedelta(seconds=10))  # too fresh with a lag
    put(cloudwatch, "green", "RequestCount", 70, now - timedelta(seconds=100))
    source = CloudWatchMetrics(TARGETS, client=cloudwatch, clock=lambda: now, lag_seconds=90)
    assert source.metrics("green", 60).requests == 70


def test_no_datapoints_is_no_traffic_and_no_verdict(cloudwatch: Any) -> None:
    source = CloudWatchMetrics(TARGETS, client=cloudwatch)
    assert source.metrics("blue", 60) == ColorMetrics(0, 0, None)
    verdict = CanaryAnalysis(source, Thresholds()).check("green", "blue")
    assert verdict.passed and not verdict.conclusive
    assert verdict.reason.startswith("no verdict yet: green served 0 requests")


def test_analysis_on_moto_flags_a_canary_that_fails_5_percent(cloudwatch: Any, now: datetime) -> None:
    put(cloudwatch, "green", "RequestCount", 400, now - timedelta(seconds=20))
    put(cloudwatch, "green", "HTTPCode_Target_5XX_Count", 20, now - timedelta(seconds=20))
    put(cloudwatch, "blue", "RequestCount", 3600, now - timedelta(seconds=20))
    put(cloudwatch, "blue", "HTTPCode_Target_5XX_Count", 4, now - timedelta(seconds=20))
    source = CloudWatchMetrics(TARGETS, client=cloudwatch, clock=lambda: now)
    verdict = CanaryAnalysis(source, Thresholds()).check("green", "blue")
    assert not verdict.passed and verdict.conclusive
    assert verdict.reason == "green 5xx share 5.0% vs blue 0.1%: +4.9 points > 1.0 allowed (400 requests)"
    # The other way round (blue judged against a failing green), nothing is worse.
    assert CanaryAnalysis(source, Thresholds()).check("blue", "green").passed


def test_built_from_region_with_default_credentials(cloudwatch: Any, now: datetime) -> None:
    put(cloudwatch, "blue", "RequestCount", 12, now - timedelta(seconds=20))
    source = CloudWatchMetrics(TARGETS, region="eu-west-1", clock=lambda: now)
    assert source.metrics("blue", 60).requests == 12


def _expected(color: Color, metric: str, start: datetime, end: datetime, **stat: list[str]) -> dict[str, Any]:
    return {
        "Namespace": "AWS/ApplicationELB",
        "MetricName": metric,
        "Dimensions": dims(color),
        "StartTime": start,
        "EndTime": end,
        "Period": 120,
        **stat,
    }


def test_the_request_and_the_p99_on_awss_response_shape() -> None:
    # What real CloudWatch answers to ExtendedStatistics (moto does not): the p99 of a
    # two-period window is the larger of the two, an upper bound of the window's p99.
    client = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    now = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)
    start, end = now - timedelta(seconds=30 + 120), now - timedelta(seconds=30)
    source = CloudWatchMetrics(TARGETS, client=client, clock=lambda: now, lag_seconds=30)
    assert source.window(90) == (start, end, 120)
    t0 = datetime(2026, 11, 26, 11, 58, tzinfo=UTC)
    with Stubber(client) as stub:
        stub.add_response(
            "get_metric_statistics",
            {
                "Datapoints": [
                    {"Timestamp": t0, "Sum": 150.0, "Unit": "Count"},
                    {"Timestamp": t0, "Sum": 50.0},
                ]
            },
            _expected("green", "RequestCount", start, end, Statistics=["Sum"]),
        )
        stub.add_response(
            "get_metric_statistics",
            {"Datapoints": []},
            _expected("green", "HTTPCode_Target_5XX_Count", start, end, Statistics=["Sum"]),
        )
        stub.add_response(
            "get_metric_statistics",
            {
                "Datapoints": [
                    {"Timestamp": t0, "ExtendedStatistics": {"p99": 0.180}, "Unit": "Seconds"},
                    {"Timestamp": t0 + timedelta(minutes=1), "ExtendedStatistics": {"p99": 0.420}},
                ]
            },
            _expected("green", "TargetResponseTime", start, end, ExtendedStatistics=["p99"]),
        )
        assert source.metrics("green", 90) == ColorMetrics(requests=200, errors=0, p99_seconds=0.42)
        stub.assert_no_pending_responses()


def test_a_failed_call_raises_metrics_error() -> None:
    client = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    source = CloudWatchMetrics(TARGETS, client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_metric_statistics", "AccessDenied", "not allowed: cloudwatch:GetMetricStatistics"
        )
        with pytest.raises(MetricsError, match=r"CloudWatch RequestCount of blue: .*AccessDenied"):
            source.metrics("blue", 60)
