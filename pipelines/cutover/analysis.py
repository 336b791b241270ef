"""Canary analysis: compare the new color with the old on 5xx share and p99 latency.

Between traffic steps and during each bake the release asks a `MetricsSource` for each
color's requests, 5xx responses and p99 latency over the last `window_seconds`, and
`judge` turns the two into a `Verdict`. The comparison is pure (no I/O, no clock), so it
is tested with injected series; the sources (Prometheus, CloudWatch) live in
`cutover.adapters`.

The rules, and how they relate to Flagger and Argo Rollouts:

- **Relative to the baseline, per window.** Flagger's built-in checks are absolute
  ("request-success-rate >= 99%", "request-duration <= 500 ms" of the canary alone);
  Argo Rollouts runs whatever query its AnalysisTemplate holds, usually a canary-only
  ratio, sometimes canary-minus-stable. We compare the canary with the color that
  serves the rest of the traffic in the same window: a dependency outage that fails both
  colors alike is not the new build's fault and must not roll it back, while anything the
  new build adds on top of the old one is. So a breach is
  `canary 5xx share - baseline 5xx share > max_error_rate_increase` (absolute points:
  0.01 = 1 point) or `canary p99 - baseline p99 > max_p99_increase_seconds`. Equal to the
  threshold passes.
- **Too little traffic is no verdict, not a failure.** Below `min_requests` canary
  requests in the window the verdict is `conclusive=False, passed=True`: a 10% step at
  night may see 3 requests, one of them a 500, and 33% proves nothing. This is Argo
  Rollouts' "Inconclusive" (it neither promotes nor aborts on it by itself), where
  Flagger's "no values found" counts as a failed check. What the release does with an
  inconclusive verdict (wait longer, or refuse to finish a bake without one) is the state
  machine's decision, not this module's.
- **A baseline without enough traffic is no baseline.** When the old color served fewer
  than `min_requests` (typically 0: all traffic is already on the canary during the final
  bake), its 5xx share is noise, so the canary is judged against absolute limits instead:
  its own 5xx share must not exceed `max_error_rate_increase` (that is, the baseline is
  taken as 0% errors, Flagger's behaviour). This is never more lenient than a comparison
  with a real baseline. For latency there is no honest absolute default (a 100 ms
  *increase* allowance says nothing about what p99 a service should have), so without a
  baseline p99 only `max_p99_seconds` is checked, and only when it is set (default: not
  set, so latency is then not judged and the reason says so). The same holds when the
  baseline has requests but no p99 (no latency data).
- **No canary p99** (no latency data although requests arrived) judges the error rate
  alone and says that latency was not compared.
- **A source that fails raises** (`MetricsError` or whatever the client raised):
  `CanaryAnalysis.check` does not turn errors into verdicts; the release treats a raised
  check as a failed gate, as Flagger does after its failed-checks threshold and Argo
  Rollouts on `Error` beyond its consecutiveErrorLimit (we have one attempt per check).

A breach's reason names the metric, both values, the difference and the allowance, e.g.
`green 5xx share 5.2% vs blue 0.1%: +5.1 points > 1.0 allowed (312 requests)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from cutover.model import Color


class MetricsError(RuntimeError):
    """A metrics source could not answer (transport error, bad response, query refused)."""


@dataclass(frozen=True)
class Thresholds:
    """What the canary may add on top of the baseline in one window (see the module doc)."""

    max_error_rate_increase: float = 0.01  # canary 5xx share minus baseline 5xx share (0.01 = 1 point)
    max_p99_increase_seconds: float = 0.1  # canary p99 minus baseline p99
    min_requests: int = 50  # fewer canary requests in the window: no verdict yet (not a failure)
    window_seconds: float = 60.0
    # Optional absolute ceiling on the canary's p99, checked in every window when set; the
    # only latency check when the baseline has no traffic or no latency data.
    max_p99_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_error_rate_increase", "max_p99_increase_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
        if not (isinstance(self.min_requests, int) and self.min_requests >= 0):
            raise ValueError(f"min_requests must be an integer >= 0 (got {self.min_requests!r})")
        if not (math.isfinite(self.window_seconds) and self.window_seconds > 0):
            raise ValueError(f"window_seconds must be > 0 (got {self.window_seconds!r})")
        if self.max_p99_seconds is not None and not (
            math.isfinite(self.max_p99_seconds) and self.max_p99_seconds > 0
        ):
            raise ValueError(f"max_p99_seconds must be > 0 when set (got {self.max_p99_seconds!r})")


@dataclass(frozen=True)
class ColorMetrics:
    """One color's traffic in one window. Counts are floats: Prometheus' increase()
    extrapolates. `p99_seconds` is None when there is no latency data."""

    requests: float
    errors: float
    p99_seconds: float | None

    def __post_init__(self) -> None:
        for name in ("requests", "errors"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
        if self.p99_seconds is not None and not (math.isfinite(self.p99_seconds) and self.p99_seconds >= 0):
            raise ValueError(f"p99_seconds must be a finite number >= 0 or None (got {self.p99_seconds!r})")

    @property
    def error_rate(self) -> float:
        """The 5xx share in [0, 1]; 0 without requests. Capped at 1: the two counts come
        from separate queries and may disagree slightly."""
        if self.requests <= 0:
            return 0.0
        return min(1.0, self.errors / self.requests)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p99_seconds": self.p99_seconds,
        }


@dataclass(frozen=True)
class Verdict:
    passed: bool  # False only on a breach
    conclusive: bool  # False when too few requests (min_requests) or no data
    reason: str
    canary: ColorMetrics | None
    baseline: ColorMetrics | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "conclusive": self.conclusive,
            "reason": self.reason,
            "canary": None if self.canary is None else self.canary.as_dict(),
            "baseline": None if self.baseline is None else self.baseline.as_dict(),
        }


class MetricsSource(Protocol):
    def metrics(self, color: Color, window_seconds: float) -> ColorMetrics:
        """`color`'s requests, 5xx responses and p99 over the last `window_seconds`.
        Raises (preferably `MetricsError`) when it cannot tell."""
        ...


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _count(value: float) -> str:
    return f"{value:.0f}"


def _above(value: float, limit: float) -> bool:
    """`value` is over `limit` by more than float rounding (exactly at the limit passes:
    4/100 against 3/100 is +1 point, not +1.0000000000000009)."""
    return value > limit + 1e-9 * max(1.0, abs(limit))


def judge(
    canary: ColorMetrics,
    baseline: ColorMetrics,
    thresholds: Thresholds,
    canary_color: str,
    baseline_color: str,
) -> Verdict:
    """Compare `canary` with `baseline` over the same window (pure; see the module doc)."""
    c, b, t = canary_color, baseline_color, thresholds
    n = f"({_count(canary.requests)} requests)"
    if canary.requests < t.min_requests:
        return Verdict(
            passed=True,
            conclusive=False,
            reason=(
                f"no verdict yet: {c} served {_count(canary.requests)} requests in the last "
                f"{t.window_seconds:g}s, fewer than the {t.min_requests} needed"
            ),
            canary=canary,
            baseline=baseline,
        )

    breaches: list[str] = []
    notes: list[str] = []
    has_baseline = baseline.requests >= t.min_requests
    allowed_points = f"{t.max_error_rate_increase * 100:.1f}"

    # Error rate.
    if has_baseline:
        increase = canary.error_rate - baseline.error_rate
        text = (
            f"{c} 5xx share {_pct(canary.error_rate)} vs {b} {_pct(baseline.error_rate)}: "
            f"{increase * 100:+.1f} points"
        )
        if _above(increase, t.max_error_rate_increase):
            breaches.append(f"{text} > {allowed_points} allowed {n}")
        else:
            notes.append(f"{text} (<= {allowed_points} allowed)")
    else:
        text = (
            f"{c} 5xx share {_pct(canary.error_rate)} ({b} served {_count(baseline.requests)} "
            f"requests, too few to compare: absolute limit)"
        )
        if _above(canary.error_rate, t.max_error_rate_increase):
            breaches.append(
                f"{text}: {_pct(canary.error_rate)} > {_pct(t.max_error_rate_increase)} allowed {n}"
            )
        else:
            notes.append(f"{text} <= {_pct(t.max_error_rate_increase)} allowed")

    # Latency, relative.
    if canary.p99_seconds is None:
        notes.append(f"p99 not compared: no latency data for {c}")
    elif has_baseline and baseline.p99_seconds is not None:
        delta = canary.p99_seconds - baseline.p99_seconds
        text = (
            f"{c} p99 {_ms(canary.p99_seconds)} vs {b} {_ms(baseline.p99_seconds)}: "
            f"{'+' if delta >= 0 else '-'}{_ms(abs(delta))}"
        )
        if _above(delta, t.max_p99_increase_seconds):
            breaches.append(f"{text} > {_ms(t.max_p99_increase_seconds)} allowed {n}")
        else:
            notes.append(f"{text} (<= {_ms(t.max_p99_increase_seconds)} allowed)")
    elif t.max_p99_seconds is None:
        why = "has no latency data" if has_baseline else f"served {_count(baseline.requests)} requests"
        notes.append(f"p99 not compared: {b} {why} to compare with")

    # Latency, absolute (when configured).
    if canary.p99_seconds is not None and t.max_p99_seconds is not None:
        text = f"{c} p99 {_ms(canary.p99_seconds)}"
        if _above(canary.p99_seconds, t.max_p99_seconds):
            breaches.append(f"{text} > {_ms(t.max_p99_seconds)} allowed (absolute) {n}")
        else:
            notes.append(f"{text} <= {_ms(t.max_p99_seconds)} allowed (absolute)")

    if breaches:
        return Verdict(False, True, "; ".join(breaches), canary, baseline)
    return Verdict(True, True, "; ".join(notes) + f" {n}", canary, baseline)


class CanaryAnalysis:
    """Fetches both colors from one source and judges them."""

    def __init__(self, source: MetricsSource, thresholds: Thresholds) -> None:
        self.source = source
        self.thresholds = thresholds

    def check(self, canary: Color, baseline: Color) -> Verdict:
        """The verdict for the last `window_seconds`. A source error propagates: the
        release treats it as a failed gate."""
        window = self.thresholds.window_seconds
        canary_metrics = self.source.metrics(canary, window)
        baseline_metrics = self.source.metrics(baseline, window)
        return judge(canary_metrics, baseline_metrics, self.thresholds, canary, baseline)
