"""Builds the adapters an environment file names, and the machine that drives them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cutover.adapters.history import DynamoDBHistory, FileHistory
from cutover.adapters.http_health import HttpHealth
from cutover.adapters.locks import DynamoDBLock, FileLock
from cutover.envconfig import EnvConfig
from cutover.machine import ReleaseMachine, Reporter
from cutover.ports import Deployer, History, Lock, TrafficRouter


def aws_client(env: EnvConfig, service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=env.aws.get("region", "us-east-1"),
        endpoint_url=env.aws.get("endpoint_url") or None,
        config=Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=5, read_timeout=20),
    )


def _relative(env: EnvConfig, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else env.path.parent / path


def build_router(env: EnvConfig) -> TrafficRouter:
    spec = env.router
    if spec["type"] == "route53":
        from cutover.adapters.route53 import Route53Router

        return Route53Router(
            aws_client(env, "route53"),
            spec["hosted_zone_id"],
            spec["record_name"],
            generation_record=spec.get("generation_record"),
            set_identifiers=spec.get("set_identifiers"),
        )
    from cutover.adapters.envoy_router import EnvoyRouter

    router: TrafficRouter = EnvoyRouter.from_spec(spec, base=env.path.parent)
    return router


def build_deployer(env: EnvConfig) -> Deployer:
    spec = env.deployer
    if spec["type"] == "pulumi":
        from cutover.adapters.pulumi_deployer import AutomationStack, PulumiDeployer

        return PulumiDeployer(
            AutomationStack(spec["stack"], str(_relative(env, spec.get("work_dir", ".")))),
            spec.get("config_key", "cutover:{color}Image"),
        )
    from cutover.adapters.local_deployer import LocalDeployer

    return LocalDeployer(_relative(env, spec["state_dir"]), spec["ports"], spec.get("env", {}))


def build_lock(env: EnvConfig) -> Lock:
    spec = env.lock
    lease = float(spec.get("lease_seconds", 60))
    if spec["type"] == "dynamodb":
        return DynamoDBLock(aws_client(env, "dynamodb"), spec["table"], env.name, lease_seconds=lease)
    return FileLock(_relative(env, spec["path"]), lease_seconds=lease)


def build_history(env: EnvConfig) -> History:
    spec = env.history
    if spec["type"] == "dynamodb":
        return DynamoDBHistory(aws_client(env, "dynamodb"), spec["table"], env.name)
    return FileHistory(_relative(env, spec["path"]))


def build_machine(
    env: EnvConfig, reporter: Reporter | None = None, router: TrafficRouter | None = None
) -> ReleaseMachine:
    return ReleaseMachine(
        env.name,
        router or build_router(env),
        build_deployer(env),
        build_lock(env),
        build_history(env),
        HttpHealth(env.endpoints, env.smoke_checks),
        env.gates,
        reporter=reporter,
    )
