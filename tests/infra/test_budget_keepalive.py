"""The keep-alive rule of the drain budget: the app's keep-alive outlives the ALB's idle timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cutover_infra.budget import (
    ALB_IDLE_TIMEOUT_SECONDS,
    DEFAULT_KEEP_ALIVE_SECONDS,
    DrainBudgetError,
    check_keep_alive,
)

from ledger.config import Settings

CHART_VALUES = Path(__file__).resolve().parents[2] / "charts" / "ledger" / "values.yaml"


@pytest.mark.parametrize(("keep_alive", "idle"), [(61, 60), (75, 60), (60.5, 60), (4000, 3999)])
def test_a_keep_alive_longer_than_the_idle_timeout_passes(keep_alive: float, idle: float) -> None:
    assert check_keep_alive(keep_alive, idle) == keep_alive


@pytest.mark.parametrize(("keep_alive", "idle"), [(60, 60), (5, 60), (59.5, 60), (75, 120)])
def test_a_keep_alive_not_longer_than_the_idle_timeout_is_refused_naming_both(
    keep_alive: float, idle: float
) -> None:
    with pytest.raises(DrainBudgetError) as error:
        check_keep_alive(keep_alive, idle)
    message = str(error.value)
    assert f"http.keepAliveSeconds ({keep_alive:g})" in message
    assert f"aws.idleTimeoutSeconds ({idle:g})" in message
    assert f"raise http.keepAliveSeconds above {idle:g}" in message
    assert "\n" not in message


def test_the_defaults_agree_everywhere() -> None:
    """ledger's default, the chart's defaults and budget.py's constants are one rule."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    ledger_default = Settings.from_env({"DATABASE_URL": "postgresql://u:p@db/x"}).http_keep_alive_seconds
    assert ledger_default == values["http"]["keepAliveSeconds"] == DEFAULT_KEEP_ALIVE_SECONDS
    assert values["aws"]["idleTimeoutSeconds"] == ALB_IDLE_TIMEOUT_SECONDS == 60  # AWS's default
    assert check_keep_alive(DEFAULT_KEEP_ALIVE_SECONDS, ALB_IDLE_TIMEOUT_SECONDS) == 75
