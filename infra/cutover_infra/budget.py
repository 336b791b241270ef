"""The drain budget: how long each stage of a pod's exit may take, and whether they fit.

A pod must leave the load balancer before it stops accepting requests:
1. preStop sleep >= target group deregistration delay + margin: the kubelet sends SIGTERM
   only after preStop, and during it the ALB finishes draining the target (the AWS Load
   Balancer Controller's pod graceful-shutdown guidance);
2. terminationGracePeriodSeconds >= preStop + DRAIN_SECONDS + SHUTDOWN_TIMEOUT_SECONDS +
   margin: the grace period counts from the start of preStop, and the kubelet SIGKILLs
   whatever still runs when it ends.
3. the app's keep-alive (HTTP_KEEP_ALIVE_SECONDS) > the load balancer's idle timeout: an
   ALB reuses an idle connection for up to its idle timeout (60 s by default); a target
   that closed it first makes the ALB answer 502 (`check_keep_alive`).
The service chart's templates/_helpers.tpl enforces the same rules when rendering; a test
renders the chart across many value sets and checks both agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The chart's default HTTP_KEEP_ALIVE_SECONDS and the ALB's default idle timeout.
DEFAULT_KEEP_ALIVE_SECONDS = 75
ALB_IDLE_TIMEOUT_SECONDS = 60


class DrainBudgetError(ValueError):
    """The values cannot drain a pod safely; the message names the values to change."""


def check_keep_alive(app_keep_alive: float, lb_idle_timeout: float) -> float:
    """The app's keep-alive, if it outlives the load balancer's idle timeout; else DrainBudgetError.

    Same rule and wording as the chart (http.keepAliveSeconds, aws.idleTimeoutSeconds)."""
    if not app_keep_alive > lb_idle_timeout:
        raise DrainBudgetError(
            f"drain budget: http.keepAliveSeconds ({app_keep_alive:g}) must be > aws.idleTimeoutSeconds "
            f"({lb_idle_timeout:g}), the load balancer's idle timeout, or it reuses connections the service has "
            f"closed (502s); raise http.keepAliveSeconds above {lb_idle_timeout:g} or lower aws.idleTimeoutSeconds"
        )
    return app_keep_alive


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
