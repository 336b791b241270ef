"""Bad values are refused before anything renders, with a message naming the value."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from cutover_infra.budget import DrainBudgetError, drain_budget
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.charts.helpers import BASE_VALUES, by_kind, merged, render

REFUSED = [
    ({"color": "purple"}, "color"),
    ({"replicaCount": -1}, "replicaCount"),
    ({"image": {"tag": ""}}, "tag"),
    ({"image": {"tag": "latest"}}, "tag"),
    ({"database": {"existingSecret": ""}}, "existingSecret"),
    ({"aws": {"targetGroupArn": "not-an-arn"}}, "targetGroupArn"),
    ({"drainSeconds": -1}, "drainSeconds"),
    ({"unknownKnob": True}, "unknownKnob"),
    ({"drainSeconds": 60, "terminationGracePeriodSeconds": 30}, "terminationGracePeriodSeconds"),
    ({"preStop": {"sleepSeconds": 5}}, "preStop.sleepSeconds"),
]


@pytest.mark.parametrize(("bad", "named"), REFUSED, ids=[n for _, n in REFUSED])
def test_bad_values_are_refused_naming_the_value(bad: dict[str, Any], named: str) -> None:
    with pytest.raises(helm_python.HelmError) as error:
        render(merged(BASE_VALUES, bad))
    assert named in str(error.value)


def _grace_from_chart(values: dict[str, Any]) -> int | str:
    try:
        (deployment,) = by_kind(render(values), "Deployment")
    except helm_python.HelmError as error:
        return "refused: " + ("preStop" if "budget: preStop.sleepSeconds" in str(error) else "grace")
    return int(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def _grace_from_python(kw: dict[str, Any]) -> int | str:
    try:
        return drain_budget(**kw).termination_grace
    except DrainBudgetError as error:
        return "refused: " + ("preStop" if "budget: preStop.sleepSeconds" in str(error) else "grace")


@settings(max_examples=40, deadline=None)
@given(
    deregistration=st.integers(0, 60),
    pre_stop=st.integers(0, 90),
    drain=st.sampled_from([0, 0.5, 2, 5, 12.5, 30]),
    shutdown=st.sampled_from([0, 1, 20, 45.5]),
    margin=st.integers(0, 10),
    grace=st.one_of(st.none(), st.integers(1, 200)),
)
def test_the_chart_and_the_python_budget_agree(
    deregistration: int, pre_stop: int, drain: float, shutdown: float, margin: int, grace: int | None
) -> None:
    values = merged(
        BASE_VALUES,
        {
            "aws": {"deregistrationDelaySeconds": deregistration},
            "preStop": {"sleepSeconds": pre_stop},
            "drainSeconds": drain,
            "shutdownTimeoutSeconds": shutdown,
            "drainBudget": {"marginSeconds": margin},
            "terminationGracePeriodSeconds": grace,
        },
    )
    python = _grace_from_python(
        {
            "deregistration_delay": deregistration,
            "pre_stop_sleep": pre_stop,
            "drain_seconds": drain,
            "shutdown_timeout": shutdown,
            "margin": margin,
            "termination_grace": grace,
        }
    )
    assert _grace_from_chart(values) == python


def test_defaults_fit_the_budget() -> None:
    (deployment,) = by_kind(render(BASE_VALUES), "Deployment")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 15 + 5 + 20 + 5
