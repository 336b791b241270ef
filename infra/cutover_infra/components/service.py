"""One blue/green service: the public component a team's service is declared with.

Per color: a target group (ip targets on the service's port, health-checked on its ready
path, cookie stickiness, deregistration delay from its drain budget) behind the color's
shared ALB, with a host rule for the service's names, and the service chart installed in
the service's namespace (components/app.py). Then the Route53 weighted records `cutover`
switches (components/traffic.py), the settings `cutover` reads (`cutover_env`, also in SSM),
and, when the stack makes repositories, the service's ECR repository.

Every name derives from the service's cutover environment (`ServiceConfig.cutover_env`):
a service whose cutover environment is the stack's own keeps the names of the
single-service layout (docs/onboarding.md, "Upgrading a single-service stack"), and the
aliases below move its resources under this component without replacing any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from cutover_infra.budget import DrainBudget
from cutover_infra.components.app import App, AppArgs, AppDatabase
from cutover_infra.components.registry import Registry, RegistryArgs
from cutover_infra.components.release_state import CutoverEnv, CutoverEnvArgs
from cutover_infra.components.traffic import ColorTarget, Traffic, TrafficArgs
from cutover_infra.config import COLORS, ServiceConfig
from cutover_infra.values import (
    cutover_env,
    ecr_repository,
    resource_name,
    split_image,
    tags,
)

# The service was a child of the stack before services were components.
_WAS_AT_ROOT = [pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]


@dataclass
class ServiceBalancer:
    """The shared ALB of one color, as a service attaches to it (LoadBalancer's outputs)."""

    balancer: (
        pulumi.Resource
    )  # the LoadBalancer component (the single-service layout's target group's parent)
    dns_name: pulumi.Input[str]
    zone_id: pulumi.Input[str]
    arn: pulumi.Input[str]
    https_listener_arn: pulumi.Input[str]


@dataclass
class BlueGreenServiceArgs:
    """Everything one service needs; `service` is its entry of `cutover:services`."""

    environment: str  # the stack's (cutover:environment)
    service: ServiceConfig
    chart: str  # the service chart's directory (cutover:chart, or the service's own)
    region: str
    hosted_zone_id: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    balancers: dict[str, ServiceBalancer]  # per color
    image_repository: str  # the service's, or the URL of the repository made for it (create_registry)
    images: dict[str, str]  # per color: what runs (cutover's release state, else config)
    weights: dict[str, int]  # the live weights (the initial ones before the records exist)
    generation: int  # the live traffic generation
    ttl: int
    stickiness_seconds: int
    lock_table: pulumi.Input[str]
    history_table: pulumi.Input[str]
    provider: k8s.Provider
    oidc_provider_arn: pulumi.Input[str]
    issuer_url: pulumi.Input[str]
    idle_timeout_seconds: int
    database: AppDatabase | None = None  # the stack's database (provisioned mode)
    create_registry: bool = False
    keep_images: int = 100
    protect: bool = False
    teardown: bool = False
    workload_dependencies: list[pulumi.Resource] | None = None  # the Load Balancer Controller


class BlueGreenService(pulumi.ComponentResource):
    """A service on both colors, its traffic records and its cutover settings."""

    cutover_env: pulumi.Output[dict[str, Any]]
    image_digests: dict[str, pulumi.Output[str] | str | None]
    target_groups: dict[str, aws.lb.TargetGroup]

    def __init__(
        self, name: str, args: BlueGreenServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cutover:service:BlueGreenService", name, None, opts)
        service = args.service
        env_name = service.cutover_env
        single_service = env_name == args.environment  # the names of the single-service layout
        moved = pulumi.ResourceOptions(parent=self, aliases=_WAS_AT_ROOT)
        self.image_repository: pulumi.Input[str] = args.image_repository
        if args.create_registry:
            registry = Registry(
                f"{env_name}-registry",
                RegistryArgs(args.environment, service.name, args.keep_images, args.protect, args.teardown),
                opts=moved,
            )
            self.image_repository = registry.url
        self.target_groups = {}
        apps: dict[str, App] = {}
        for color in COLORS:
            balancer = args.balancers[color]
            aliases = [pulumi.Alias(name=f"{args.environment}-{color}-lb-tg", parent=balancer.balancer)]
            target_group = aws.lb.TargetGroup(
                f"{env_name}-{color}-tg",
                name=resource_name(env_name, color),
                port=service.port,
                protocol="HTTP",
                target_type="ip",
                vpc_id=args.vpc_id,
                deregistration_delay=service.drain.deregistration_delay,
                health_check=aws.lb.TargetGroupHealthCheckArgs(
                    enabled=True,
                    path=service.health.ready,
                    port="traffic-port",
                    protocol="HTTP",
                    matcher="200",
                    interval=5,
                    timeout=2,
                    healthy_threshold=2,
                    unhealthy_threshold=2,
                ),
                stickiness=aws.lb.TargetGroupStickinessArgs(
                    enabled=True, type="lb_cookie", cookie_duration=args.stickiness_seconds
                ),
                tags=tags(args.environment, service=service.name, color=color),
                opts=pulumi.ResourceOptions(parent=self, aliases=aliases if single_service else None),
            )
            self.target_groups[color] = target_group
            aws.lb.ListenerRule(
                f"{env_name}-{color}-rule",
                listener_arn=balancer.https_listener_arn,
                priority=service.rule_priority,  # from its name: unique per listener (config checks)
                conditions=[
                    aws.lb.ListenerRuleConditionArgs(
                        host_header=aws.lb.ListenerRuleConditionHostHeaderArgs(
                            values=[service.domain, f"{color}.{service.domain}"]
                        )
                    )
                ],
                actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)],
                tags=tags(args.environment, service=service.name, color=color),
                opts=pulumi.ResourceOptions(parent=self),
            )
            apps[color] = App(
                f"{env_name}-{color}-app",
                AppArgs(
                    environment=args.environment,
                    service=service,
                    chart=args.chart,
                    color=color,
                    region=args.region,
                    image_repository=args.image_repository,
                    image_tag=args.images[color],
                    replicas=service.colors[color].replicas,
                    database=args.database if service.database.mode == "provisioned" else None,
                    target_group_arn=target_group.arn,
                    budget=service.drain,
                    vpc_cidr=args.vpc_cidr,
                    provider=args.provider,
                    oidc_provider_arn=args.oidc_provider_arn,
                    issuer_url=args.issuer_url,
                    idle_timeout_seconds=args.idle_timeout_seconds,
                    keep_alive_seconds=service.keep_alive_seconds,
                ),
                # After the Load Balancer Controller when this stack installs it, and destroyed
                # before it (the TargetGroupBindings' finalizers need the controller).
                opts=pulumi.ResourceOptions(
                    parent=self, aliases=_WAS_AT_ROOT, depends_on=args.workload_dependencies or []
                ),
            )
        Traffic(
            f"{env_name}-traffic",
            TrafficArgs(
                environment=args.environment,
                service=service.name,
                domain=service.domain,
                hosted_zone_id=args.hosted_zone_id,
                weights=args.weights,
                generation=args.generation,
                ttl=args.ttl,
                ready_path=service.health.ready,
                targets={
                    c: ColorTarget(args.balancers[c].dns_name, args.balancers[c].zone_id) for c in COLORS
                },
            ),
            opts=moved,
        )
        n = len(COLORS)
        colors_out = pulumi.Output.all(
            *[apps[c].release.urn for c in COLORS],
            *[self.target_groups[c].arn for c in COLORS],
            *[args.balancers[c].arn for c in COLORS],
        ).apply(
            lambda v: {
                color: {
                    "endpoint": f"https://{color}.{service.domain}",
                    "urns": [v[i]],
                    "target_group_arn": v[n + i],
                    "load_balancer_arn": v[2 * n + i],  # with the target group: CloudWatch's dimensions
                }
                for i, color in enumerate(COLORS)
            }
        )
        self.cutover_env = pulumi.Output.all(args.lock_table, args.history_table, colors_out).apply(
            lambda v: cutover_env(
                stack=pulumi.get_stack(),
                service=service,
                region=args.region,
                hosted_zone_id=args.hosted_zone_id,
                lock_table=v[0],
                history_table=v[1],
                colors=v[2],
            )
        )
        CutoverEnv(
            f"{env_name}-cutover-env",
            CutoverEnvArgs(
                env_name, self.cutover_env.apply(json.dumps), tags(args.environment, service=service.name)
            ),
            opts=moved,
        )
        self.image_digests = _image_digests(args.image_repository, args.images)
        self.register_outputs(
            {
                "cutoverEnv": self.cutover_env,
                "targetGroups": {c: tg.arn for c, tg in self.target_groups.items()},
            }
        )


def _image_digests(repository: str, images: dict[str, str]) -> dict[str, pulumi.Output[str] | str | None]:
    """The digest of each color's image: the one it is pinned to (`tag@sha256:...`), else
    looked up when it lives in ECR (the lookup fails the update if the tag does not exist:
    better before the deploy than in a crash-looping pod), else unknown."""
    ecr = ecr_repository(repository)
    digests: dict[str, pulumi.Output[str] | str | None] = {}
    for color in COLORS:
        tag, digest = split_image(images[color])
        if digest:
            digests[color] = digest
        elif ecr is not None:
            digests[color] = aws.ecr.get_image_output(
                registry_id=ecr[0], repository_name=ecr[1], image_tag=tag
            ).image_digest
        else:
            digests[color] = None
    return digests


__all__ = ["BlueGreenService", "BlueGreenServiceArgs", "DrainBudget", "ServiceBalancer"]
