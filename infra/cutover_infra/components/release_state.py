"""DynamoDB tables for cutover's release lock, release state and history, and the
`cutover_env` settings published where on-call can read them with AWS credentials alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from cutover_infra.values import resource_name, tags


@dataclass
class ReleaseStateArgs:
    environment: str
    protect: bool


class ReleaseState(pulumi.ComponentResource):
    def __init__(self, name: str, args: ReleaseStateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:release:ReleaseState", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=args.protect)

        def table(suffix: str, attributes: list[tuple[str, str]], **keys: Any) -> aws.dynamodb.Table:
            return aws.dynamodb.Table(
                f"{name}-{suffix}",
                name=resource_name(args.environment, suffix),
                attributes=[aws.dynamodb.TableAttributeArgs(name=n, type=t) for n, t in attributes],
                billing_mode="PAY_PER_REQUEST",
                point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
                server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
                deletion_protection_enabled=args.protect,
                tags=tags(args.environment),
                opts=child,
                **keys,
            )

        self.locks = table(
            "locks",
            [("lock_id", "S")],
            hash_key="lock_id",
            # An abandoned lease disappears on its own too (cutover also takes over expired ones).
            ttl=aws.dynamodb.TableTtlArgs(attribute_name="expires_at", enabled=True),
        )
        self.history = table(
            "history", [("env", "S"), ("sort_key", "S")], hash_key="env", range_key="sort_key"
        )
        self.register_outputs({"lockTable": self.locks.name, "historyTable": self.history.name})


@dataclass
class CutoverEnvArgs:
    environment: str  # the service's cutover environment
    settings: pulumi.Input[str]  # the service's cutover_env, as JSON
    resource_tags: dict[str, str] | None = None  # default: tags(environment)


class CutoverEnv(pulumi.ComponentResource):
    """A service's `cutover_env` as an SSM parameter, `/cutover/<cutover env>/cutover-env`: the
    rollback workflow writes the environment file from it with the AWS CLI, no Pulumi CLI or
    backend login."""

    def __init__(self, name: str, args: CutoverEnvArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:release:CutoverEnv", name, None, opts)
        self.parameter = aws.ssm.Parameter(
            f"{name}-parameter",
            name=parameter_name(args.environment),
            type="String",
            value=args.settings,
            description="cutover's environment settings (pulumi stack output cutover_envs)",
            tags=args.resource_tags or tags(args.environment),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"parameter": self.parameter.name})


def parameter_name(environment: str) -> str:
    return f"/cutover/{environment}/cutover-env"
