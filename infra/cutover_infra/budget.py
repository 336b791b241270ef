"""The drain budget: how long each stage of a pod's exit may take, and whether they fit.

A pod must leave the load balancer before it stops accepting requests:
1. preStop sleep >= target group deregistration delay + margin: the kubelet sends SIGTERM
   only after preStop, and during it the ALB finishes draining the target (the AWS Load
   Balancer Controller's pod graceful-shutdown guidance);
2. terminationGracePeriodSeconds >= preStop + DRAIN_SECONDS + SHUTDOWN_TIMEOUT_SECONDS +
   margin: the grace period counts from the start of preStop, and the kubelet SIGKILLs
   whatever still runs when it ends.
charts/ledger/templates/_helpers.tpl enforces the same two rules when rendering; a test
renders the chart across many value sets and checks both agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class DrainBudgetError(ValueError):
    """The values cannot drain a pod safely; the message names the values to change."""


@dataclass(frozen=True)
class DrainBudget:
    deregistration_delay: int
    pre_stop_sleep: int
    drain_seconds: float
    shutdown_timeout: float
    margin: int
    termination_grace: int


def minimum_grace(pre_stop_sleep: int, drain_seconds: float, shutdown_timeout: float, margin: int) -> int:
    return pre_stop_sleep + math.ceil(drain_seconds) + math.ceil(shutdown_timeout) + margin


def drain_budget(
    *,
    deregistration_delay: int,
    pre_stop_sleep: int,
    drain_seconds: float,
    shutdown_timeout: float,
    margin: int = 5,
    termination_grace: int | None = None,
) -> DrainBudget:
    """Check the rules and return the budget (with the grace period filled in if not given)."""
    if pre_stop_sleep < deregistration_delay + margin:
        raise DrainBudgetError(
            f"drain budget: preStop.sleepSeconds ({pre_stop_sleep}) must be >= aws.deregistrationDelaySeconds "
            f"({deregistration_delay}) + drainBudget.marginSeconds ({margin}) = {deregistration_delay + margin}; "
            "raise preStop.sleepSeconds or lower aws.deregistrationDelaySeconds"
        )
    floor = minimum_grace(pre_stop_sleep, drain_seconds, shutdown_timeout, margin)
    if termination_grace is not None and termination_grace < floor:
        raise DrainBudgetError(
            f"drain budget: terminationGracePeriodSeconds ({termination_grace}) must be >= "
            f"preStop.sleepSeconds + drainSeconds + shutdownTimeoutSeconds + drainBudget.marginSeconds = {floor}; "
            "raise terminationGracePeriodSeconds (or leave it empty) or lower drainSeconds/shutdownTimeoutSeconds"
        )
    return DrainBudget(
        deregistration_delay,
        pre_stop_sleep,
        drain_seconds,
        shutdown_timeout,
        margin,
        termination_grace if termination_grace is not None else floor,
    )


def budget_for_deregistration(
    deregistration_delay: int, drain_seconds: float, shutdown_timeout: float, margin: int = 5
) -> DrainBudget:
    """The tightest valid budget around a target group's deregistration delay."""
    return drain_budget(
        deregistration_delay=deregistration_delay,
        pre_stop_sleep=deregistration_delay + margin,
        drain_seconds=drain_seconds,
        shutdown_timeout=shutdown_timeout,
        margin=margin,
    )
