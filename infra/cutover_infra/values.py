"""Pure functions the components use: names, tags, chart values, the cutover_env output."""

from __future__ import annotations

import json
import re
from typing import Any

from cutover_infra.budget import DrainBudget

CHART_PATH = "charts/ledger"
# The ALB listener policy: TLS 1.3 with TLS 1.2 fallback, forward secrecy only (AWS's
# recommended policy for ALBs).
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
APP_PORT = 8000


def resource_name(environment: str, *parts: str) -> str:
    """`cutover-<env>-<parts>`, at most 32 characters (the ALB and target group limit)."""
    name = "-".join(("cutover", environment, *parts))
    return name[:32].rstrip("-")


def tags(environment: str, **extra: str) -> dict[str, str]:
    return {"project": "cutover", "environment": environment, "managed-by": "pulumi", **extra}


def namespace(color: str) -> str:
    return f"ledger-{color}"


def chart_values(
    *,
    color: str,
    image_repository: str,
    image_tag: str,
    replicas: int,
    database_secret: str,
    target_group_arn: str,
    budget: DrainBudget,
    vpc_cidr: str,
    database_cidr: str = "",
) -> dict[str, Any]:
    """The values charts/ledger is installed with for one color."""
    return {
        "color": color,
        "replicaCount": replicas,
        "image": {"repository": image_repository, "tag": image_tag},
        "database": {"existingSecret": database_secret, "urlKey": "DATABASE_URL", "cidr": database_cidr},
        "aws": {
            "targetGroupArn": target_group_arn,
            "deregistrationDelaySeconds": budget.deregistration_delay,
        },
        "drainSeconds": budget.drain_seconds,
        "shutdownTimeoutSeconds": budget.shutdown_timeout,
        "preStop": {"sleepSeconds": budget.pre_stop_sleep, "nativeSleep": True},
        "drainBudget": {"marginSeconds": budget.margin},
        "terminationGracePeriodSeconds": budget.termination_grace,
        # The ALB sits in the VPC: its X-Forwarded-For is the client address to rate-limit.
        "trustedProxies": [vpc_cidr],
        "podDisruptionBudget": {"minAvailable": 1 if replicas <= 2 else replicas - 1},
    }


def cutover_env(
    *,
    stack: str,
    environment: str,
    region: str,
    hosted_zone_id: str,
    domain: str,
    lock_table: str,
    history_table: str,
    colors: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What `cutover` needs to operate this environment (`pulumi stack output cutover_env`)."""
    return {
        "name": environment,
        "router": {
            "type": "route53",
            "hosted_zone_id": hosted_zone_id,
            "record_name": domain,
            "generation_record": f"_cutover.{domain}",
            "set_identifiers": {"blue": "blue", "green": "green"},
        },
        "deployer": {"type": "pulumi", "stack": stack, "work_dir": ".", "config_key": "cutover:{color}Image"},
        "lock": {"type": "dynamodb", "table": lock_table, "lease_seconds": 60},
        "history": {"type": "dynamodb", "table": history_table},
        "aws": {"region": region},
        # Canary analysis on each color's ALB target group metrics (ALB metrics arrive about
        # a minute late, hence the lag). Tune per environment in the environment file.
        "analysis": {
            "type": "cloudwatch",
            "lag_seconds": 60,
            "window_seconds": 300,
            "min_requests": 100,
            "max_error_rate_increase": 0.01,
            "max_p99_increase_seconds": 0.1,
        },
        "colors": colors,
    }


def release_state_key(environment: str) -> str:
    """The lock-table item where `cutover` keeps the environment's release state."""
    return json.dumps({"lock_id": {"S": f"{environment}#release-state"}})


def deployed_images(item: str | None, committed: dict[str, str]) -> dict[str, str]:
    """The image each color runs: what cutover's release state records (the one source of
    truth once cutover has operated the environment), else the committed stack config.

    `item` is the DynamoDB item as the getTableItem data source returns it (attribute JSON),
    or None before the first release. A full `pulumi up` from any clone then deploys what
    runs, never the tag a checkout happens to hold."""
    if not item:
        return dict(committed)
    attributes = json.loads(item)
    state = json.loads(attributes.get("state", {}).get("S") or "{}")
    colors = state.get("colors") or {}
    return {color: (colors.get(color) or {}).get("image") or committed[color] for color in committed}


_ECR = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<name>[a-z0-9._/-]+)$"
)


def ecr_repository(image_repository: str) -> tuple[str, str] | None:
    """(registry id, repository name) of an ECR repository URL, or None for any other registry."""
    match = _ECR.match(image_repository)
    return (match["registry"], match["name"]) if match else None
