"""Canary analysis on injected series: the comparison rules as properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cutover.analysis import CanaryAnalysis, ColorMetrics, MetricsError, Thresholds, Verdict, judge
from tests.pipelines.metrics_fixtures import Request, SeriesSource, p99, summarize

props = settings(deadline=None, max_examples=200)  # pure and fast; no deadline on 2 shared cores

counts = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
latencies = st.none() | st.floats(min_value=0, max_value=30, allow_nan=False, allow_infinity=False)
shares = st.floats(min_value=0, max_value=1, allow_nan=False)
thresholds = st.builds(
    Thresholds,
    max_error_rate_increase=st.floats(min_value=0, max_value=0.5, allow_nan=False),
    max_p99_increase_seconds=st.floats(min_value=0, max_value=2, allow_nan=False),
    min_requests=st.integers(min_value=0, max_value=500),
    window_seconds=st.floats(min_value=1, max_value=3600, allow_nan=False),
    max_p99_seconds=st.none() | st.floats(min_value=0.001, max_value=10, allow_nan=False),
)


@st.composite
def color_metrics(draw: st.DrawFn, min_requests: float = 0) -> ColorMetrics:
    requests = draw(st.floats(min_value=min_requests, max_value=1e6, allow_nan=False, allow_infinity=False))
    errors = requests * draw(shares)
    return ColorMetrics(requests=requests, errors=errors, p99_seconds=draw(latencies))


@st.composite
def below_min_requests(draw: st.DrawFn) -> tuple[ColorMetrics, Thresholds]:
    """Thresholds with min_requests >= 1 and a color that served fewer: built, not filtered
    (filtering rejected most draws and tripped hypothesis' health check on CI)."""
    t = draw(thresholds.filter(lambda t: t.min_requests >= 1))
    requests = draw(st.floats(min_value=0, max_value=t.min_requests, exclude_max=True, allow_nan=False))
    thin = ColorMetrics(requests=requests, errors=requests * draw(shares), p99_seconds=draw(latencies))
    return thin, t


def verdict(canary: ColorMetrics, baseline: ColorMetrics, t: Thresholds) -> Verdict:
    return judge(canary, baseline, t, "green", "blue")


def above(value: float, limit: float) -> bool:
    """The rule: over the limit by more than float rounding (exactly at the limit passes)."""
    return value > limit + 1e-9 * max(1.0, abs(limit))


def breaches_errors(v: Verdict) -> bool:
    return not v.passed and "5xx share" in v.reason


def breaches_latency(v: Verdict) -> bool:
    return not v.passed and any("p99" in part for part in v.reason.split("; "))


# --- the shape of every verdict -----------------------------------------------------------


@props
@given(color_metrics(), color_metrics(), thresholds)
def test_every_verdict_is_consistent(canary: ColorMetrics, baseline: ColorMetrics, t: Thresholds) -> None:
    v = verdict(canary, baseline, t)
    assert v.canary == canary and v.baseline == baseline
    assert v.reason
    if not v.conclusive:
        assert v.passed  # too little data is never a failure
    assert v.conclusive == (canary.requests >= t.min_requests)
    if not v.passed:
        assert breaches_errors(v) or breaches_latency(v)
        assert v.reason.endswith(f"({canary.requests:.0f} requests)")


@props
@given(below_min_requests(), color_metrics())
def test_too_few_canary_requests_is_no_verdict_whatever_the_errors(
    case: tuple[ColorMetrics, Thresholds], baseline: ColorMetrics
) -> None:
    canary, t = case
    v = verdict(canary, baseline, t)
    assert v.passed and not v.conclusive
    assert v.reason.startswith("no verdict yet: green served")
    assert f"fewer than the {t.min_requests} needed" in v.reason


@props
@given(color_metrics(), thresholds)
def test_a_canary_like_its_baseline_passes(same: ColorMetrics, t: Thresholds) -> None:
    assume(same.requests >= t.min_requests)
    assume(t.max_p99_seconds is None or same.p99_seconds is None or same.p99_seconds <= t.max_p99_seconds)
    v = verdict(same, same, t)
    assert v.passed and v.conclusive, v.reason


# --- the rules, one metric at a time ---------------------------------------------------------


@props
@given(color_metrics(), color_metrics(), thresholds)
def test_error_rule_is_the_difference_of_shares_or_the_absolute_share(
    canary: ColorMetrics, baseline: ColorMetrics, t: Thresholds
) -> None:
    assume(canary.requests >= t.min_requests)
    v = verdict(canary, baseline, t)
    if baseline.requests >= t.min_requests:
        expected = above(canary.error_rate - baseline.error_rate, t.max_error_rate_increase)
    else:  # thin baseline: taken as 0% errors
        expected = above(canary.error_rate, t.max_error_rate_increase)
    assert breaches_errors(v) == expected, v.reason


@props
@given(color_metrics(), color_metrics(), thresholds)
def test_latency_rule(canary: ColorMetrics, baseline: ColorMetrics, t: Thresholds) -> None:
    assume(canary.requests >= t.min_requests)
    v = verdict(canary, baseline, t)
    relative = (
        canary.p99_seconds is not None
        and baseline.p99_seconds is not None
        and baseline.requests >= t.min_requests
        and above(canary.p99_seconds - baseline.p99_seconds, t.max_p99_increase_seconds)
    )
    absolute = (
        canary.p99_seconds is not None
        and t.max_p99_seconds is not None
        and above(canary.p99_seconds, t.max_p99_seconds)
    )
    assert breaches_latency(v) == (relative or absolute), v.reason
    if canary.p99_seconds is None:
        assert "p99 not compared: no latency data for green" in v.reason or not v.passed


@props
@given(color_metrics(min_requests=1), color_metrics(), thresholds, st.floats(min_value=0, max_value=1))
def test_more_canary_errors_never_turn_a_breach_into_a_pass(
    canary: ColorMetrics, baseline: ColorMetrics, t: Thresholds, more: float
) -> None:
    worse = ColorMetrics(
        canary.requests, canary.errors + more * (canary.requests - canary.errors), canary.p99_seconds
    )
    if not verdict(canary, baseline, t).passed:
        assert not verdict(worse, baseline, t).passed


@props
@given(color_metrics(), color_metrics(), thresholds, st.floats(min_value=0, max_value=10))
def test_a_slower_canary_never_turns_a_breach_into_a_pass(
    canary: ColorMetrics, baseline: ColorMetrics, t: Thresholds, slower: float
) -> None:
    assume(canary.p99_seconds is not None)
    assert canary.p99_seconds is not None
    worse = ColorMetrics(canary.requests, canary.errors, canary.p99_seconds + slower)
    if not verdict(canary, baseline, t).passed:
        assert not verdict(worse, baseline, t).passed


@props
@given(color_metrics(), color_metrics(), thresholds, st.floats(min_value=0, max_value=1))
def test_a_larger_allowance_never_turns_a_pass_into_a_breach(
    canary: ColorMetrics, baseline: ColorMetrics, t: Thresholds, extra: float
) -> None:
    looser = Thresholds(
        max_error_rate_increase=t.max_error_rate_increase + extra,
        max_p99_increase_seconds=t.max_p99_increase_seconds + extra,
        min_requests=t.min_requests,
        window_seconds=t.window_seconds,
        max_p99_seconds=None if t.max_p99_seconds is None else t.max_p99_seconds + extra,
    )
    if verdict(canary, baseline, t).passed:
        assert verdict(canary, baseline, looser).passed


@props
@given(color_metrics(), below_min_requests())
def test_a_thin_baseline_is_never_more_lenient_than_a_clean_one(
    canary: ColorMetrics, case: tuple[ColorMetrics, Thresholds]
) -> None:
    """Judging against absolute limits (no usable baseline) fails at least whenever judging
    against a perfect baseline (0% errors, same p99) with enough traffic would."""
    baseline, t = case
    assert baseline.requests < t.min_requests
    clean = ColorMetrics(max(t.min_requests, 1), 0, baseline.p99_seconds)
    if breaches_errors(verdict(canary, clean, t)):
        assert breaches_errors(verdict(canary, baseline, t))


# --- what a breach says ------------------------------------------------------------------------


@props
@given(
    st.integers(min_value=50, max_value=100_000),
    st.floats(min_value=0.02, max_value=1),
    st.integers(min_value=50, max_value=100_000),
    st.floats(min_value=0, max_value=0.005),
)
def test_an_error_breach_names_metric_values_and_threshold(
    n: int, canary_share: float, m: int, baseline_share: float
) -> None:
    canary = ColorMetrics(n, n * canary_share, 0.05)
    baseline = ColorMetrics(m, m * baseline_share, 0.05)
    v = verdict(canary, baseline, Thresholds())
    assert not v.passed and v.conclusive
    assert v.reason == (
        f"green 5xx share {canary.error_rate * 100:.1f}% vs blue {baseline.error_rate * 100:.1f}%: "
        f"{(canary.error_rate - baseline.error_rate) * 100:+.1f} points > 1.0 allowed ({n} requests)"
    )


def test_the_documented_examples() -> None:
    canary = ColorMetrics(requests=312, errors=312 * 0.052, p99_seconds=0.12)
    baseline = ColorMetrics(requests=4000, errors=4, p99_seconds=0.1)
    assert verdict(canary, baseline, Thresholds()).reason == (
        "green 5xx share 5.2% vs blue 0.1%: +5.1 points > 1.0 allowed (312 requests)"
    )
    slow = ColorMetrics(requests=312, errors=0, p99_seconds=0.412)
    fast = ColorMetrics(requests=4000, errors=0, p99_seconds=0.098)
    assert verdict(slow, fast, Thresholds()).reason == (
        "green p99 412 ms vs blue 98 ms: +314 ms > 100 ms allowed (312 requests)"
    )
    both = ColorMetrics(requests=312, errors=312 * 0.052, p99_seconds=0.412)
    assert verdict(both, fast, Thresholds()).reason == (
        "green 5xx share 5.2% vs blue 0.0%: +5.2 points > 1.0 allowed (312 requests); "
        "green p99 412 ms vs blue 98 ms: +314 ms > 100 ms allowed (312 requests)"
    )
    # All traffic on green (final bake): blue has nothing to compare with.
    idle = ColorMetrics(requests=0, errors=0, p99_seconds=None)
    v = verdict(ColorMetrics(800, 16, 0.5), idle, Thresholds())
    assert not v.passed
    assert v.reason == (
        "green 5xx share 2.0% (blue served 0 requests, too few to compare: absolute limit): "
        "2.0% > 1.0% allowed (800 requests)"
    )
    v = verdict(ColorMetrics(800, 4, 0.5), idle, Thresholds())
    assert v.passed and v.conclusive
    assert "p99 not compared: blue served 0 requests to compare with" in v.reason
    v = verdict(ColorMetrics(800, 4, 0.5), ColorMetrics(800, 4, None), Thresholds())
    assert v.passed and "p99 not compared: blue has no latency data to compare with" in v.reason
    v = verdict(ColorMetrics(800, 4, 0.5), idle, Thresholds(max_p99_seconds=0.3))
    assert v.reason == "green p99 500 ms > 300 ms allowed (absolute) (800 requests)"
    v = verdict(ColorMetrics(49, 49, 9.0), idle, Thresholds())
    assert v.passed and not v.conclusive
    assert v.reason == "no verdict yet: green served 49 requests in the last 60s, fewer than the 50 needed"


def test_exactly_at_the_threshold_passes() -> None:
    t = Thresholds(max_error_rate_increase=0.25, max_p99_increase_seconds=0.25)
    baseline = ColorMetrics(requests=1000, errors=250, p99_seconds=0.25)
    at = ColorMetrics(requests=1000, errors=500, p99_seconds=0.5)  # +25 points, +250 ms: exact in binary
    assert at.error_rate - baseline.error_rate == 0.25
    assert verdict(at, baseline, t).passed
    over = ColorMetrics(requests=1000, errors=501, p99_seconds=0.5)
    assert not verdict(over, baseline, t).passed


# --- values the types refuse ---------------------------------------------------------------------


@props
@given(counts, counts)
def test_error_rate_is_a_share(requests: float, errors: float) -> None:
    rate = ColorMetrics(requests, errors, None).error_rate
    assert 0.0 <= rate <= 1.0
    if requests == 0:
        assert rate == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_error_rate_increase": -0.01},
        {"max_p99_increase_seconds": float("nan")},
        {"min_requests": -1},
        {"window_seconds": 0},
        {"max_p99_seconds": 0},
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("requests", "errors", "p99_seconds"),
    [(-1, 0, None), (10, float("nan"), None), (float("inf"), 0, None), (10, 0, -0.1), (10, 0, float("nan"))],
)
def test_bad_metrics_are_refused(requests: float, errors: float, p99_seconds: float | None) -> None:
    with pytest.raises(ValueError):
        ColorMetrics(requests, errors, p99_seconds)


# --- CanaryAnalysis over injected series -------------------------------------------------------------


def requests_with(count: int, failing_share: float, seconds: float) -> list[Request]:
    failing = round(count * failing_share)
    return [Request(500 if i < failing else 200, seconds) for i in range(count)]


@props
@given(
    st.integers(min_value=50, max_value=2000),
    st.floats(min_value=0, max_value=0.2),
    st.floats(min_value=0.001, max_value=1),
)
def test_identical_series_pass(count: int, share: float, seconds: float) -> None:
    series = requests_with(count, share, seconds)
    source = SeriesSource({"blue": series, "green": list(series)})
    v = CanaryAnalysis(source, Thresholds(window_seconds=30)).check("green", "blue")
    assert v.passed and v.conclusive
    assert source.calls == [("green", 30), ("blue", 30)]


@props
@given(
    st.integers(min_value=100, max_value=2000),
    st.floats(min_value=0, max_value=0.05),
    st.floats(min_value=0.02, max_value=0.5),
)
def test_a_canary_failing_a_share_more_than_allowed_is_flagged(count: int, base: float, extra: float) -> None:
    """Green answers 500 to `extra` of its requests on top of blue's own share."""
    blue = requests_with(count, base, 0.02)
    green = requests_with(count, min(1.0, base + extra), 0.02)
    assume(summarize(green).error_rate - summarize(blue).error_rate > 0.01)
    v = CanaryAnalysis(SeriesSource({"blue": blue, "green": green}), Thresholds()).check("green", "blue")
    assert not v.passed and v.conclusive
    assert v.reason.startswith("green 5xx share ") and "> 1.0 allowed" in v.reason


@props
@given(st.integers(min_value=100, max_value=1000), st.floats(min_value=0.101, max_value=2))
def test_a_slower_canary_is_flagged(count: int, slower: float) -> None:
    blue = requests_with(count, 0, 0.05)
    green = [Request(200, 0.05 + slower) for _ in range(count)]
    v = CanaryAnalysis(SeriesSource({"blue": blue, "green": green}), Thresholds()).check("green", "blue")
    assert not v.passed and v.reason.startswith("green p99 ")


def test_a_source_error_propagates() -> None:
    source = SeriesSource(fail=MetricsError("Prometheus unreachable"))
    with pytest.raises(MetricsError, match="unreachable"):
        CanaryAnalysis(source, Thresholds()).check("green", "blue")


def test_nearest_rank_p99() -> None:
    assert p99([]) is None
    assert p99([0.5]) == 0.5
    assert p99([float(i) for i in range(1, 101)]) == 99.0
    assert p99([float(i) for i in range(1, 201)]) == 198.0


@pytest.mark.parametrize(
    ("canary", "baseline"),
    [
        (ColorMetrics(100, 4, 0.15), ColorMetrics(100, 3, 0.05)),  # +1 point, +100 ms: exactly at the limits
        (ColorMetrics(100, 7, 0.35), ColorMetrics(100, 6, 0.25)),
    ],
)
def test_exactly_at_the_threshold_passes_whatever_float_rounding_says(
    canary: ColorMetrics, baseline: ColorMetrics
) -> None:
    v = judge(canary, baseline, Thresholds(min_requests=10), "green", "blue")
    assert v.passed and v.conclusive, v.reason
