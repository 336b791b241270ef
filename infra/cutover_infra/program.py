"""The whole program: config in, components built in order, outputs out."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from cutover_infra.components.app import App, AppArgs
from cutover_infra.components.certificate import Certificate, CertificateArgs
from cutover_infra.components.cluster import Cluster, ClusterArgs
from cutover_infra.components.database import Database, DatabaseArgs
from cutover_infra.components.load_balancer import LoadBalancer, LoadBalancerArgs
from cutover_infra.components.network import Network, NetworkArgs
from cutover_infra.components.release_state import CutoverEnv, CutoverEnvArgs, ReleaseState, ReleaseStateArgs
from cutover_infra.components.traffic import ColorTarget, Traffic, TrafficArgs
from cutover_infra.config import COLORS, StackConfig
from cutover_infra.values import (
    cutover_env,
    deployed_images,
    ecr_repository,
    release_state_key,
    resource_name,
)


def build(config: StackConfig, kubeconfig: pulumi.Output[str] | None = None) -> dict[str, Any]:
    """Declare every resource of the stack; return what it exports."""
    env = config.environment
    cluster_name = resource_name(env, "eks")
    existing = config.cluster.existing
    if existing is None:
        network = Network(
            f"{env}-network",
            NetworkArgs(
                env,
                config.network.cidr,
                config.network.availability_zones,
                cluster_name,
                config.network.nat_gateway_per_az,
            ),
        )
        vpc_id: pulumi.Input[str] = network.vpc_id
        vpc_cidr = config.network.cidr
        public: list[pulumi.Input[str]] = [s.id for s in network.public_subnets]
        private: list[pulumi.Input[str]] = [s.id for s in network.private_subnets]
    else:
        vpc_id, vpc_cidr = existing.vpc_id, existing.vpc_cidr
        public, private = list(existing.public_subnet_ids), list(existing.private_subnet_ids)

    cluster = Cluster(
        f"{env}-cluster",
        ClusterArgs(env, cluster_name, config.cluster, config.region, vpc_id, public, private, kubeconfig),
    )
    database = Database(
        f"{env}-database",
        DatabaseArgs(env, config.database, vpc_id, private, cluster.node_security_group_id, config.protect),
    )
    certificate = Certificate(
        f"{env}-certificate", CertificateArgs(env, config.domain, config.hosted_zone_id)
    )
    state = ReleaseState(f"{env}-release-state", ReleaseStateArgs(env, config.protect))
    database_url = database.url()
    images = deployed_images(
        _release_state_item(env), {color: config.colors[color].image for color in COLORS}
    )

    balancers: dict[str, LoadBalancer] = {}
    apps: dict[str, App] = {}
    for color in COLORS:
        balancers[color] = LoadBalancer(
            f"{env}-{color}-lb",
            LoadBalancerArgs(
                environment=env,
                color=color,
                vpc_id=vpc_id,
                vpc_cidr=vpc_cidr,
                public_subnet_ids=public,
                certificate_arn=certificate.arn,
                node_security_group_id=cluster.node_security_group_id,
                budget=config.drain,
                stickiness_seconds=config.traffic.stickiness_seconds,
                deletion_protection=config.is_production,
            ),
        )
        apps[color] = App(
            f"{env}-{color}-app",
            AppArgs(
                color=color,
                image_repository=config.image_repository,
                image_tag=images[color],
                replicas=config.colors[color].replicas,
                database_url=database_url,
                target_group_arn=balancers[color].target_group.arn,
                budget=config.drain,
                vpc_cidr=vpc_cidr,
                provider=cluster.provider,
            ),
            opts=pulumi.ResourceOptions(depends_on=[cluster.load_balancer_controller]),
        )
    Traffic(
        f"{env}-traffic",
        TrafficArgs(
            environment=env,
            domain=config.domain,
            hosted_zone_id=config.hosted_zone_id,
            initial_weights=dict(config.traffic.initial_weights),
            ttl=config.traffic.ttl,
            targets={c: ColorTarget(balancers[c].alb.dns_name, balancers[c].alb.zone_id) for c in COLORS},
        ),
    )

    n = len(COLORS)
    colors_out = pulumi.Output.all(
        *[apps[c].release.urn for c in COLORS],
        *[balancers[c].target_group.arn for c in COLORS],
        *[balancers[c].alb.arn for c in COLORS],
    ).apply(
        lambda v: {
            color: {
                "endpoint": f"https://{color}.{config.domain}",
                "urns": [v[i]],
                "target_group_arn": v[n + i],
                "load_balancer_arn": v[2 * n + i],  # with the target group: CloudWatch's dimensions
            }
            for i, color in enumerate(COLORS)
        }
    )
    env_output = pulumi.Output.all(state.locks.name, state.history.name, colors_out).apply(
        lambda v: cutover_env(
            stack=pulumi.get_stack(),
            environment=env,
            region=config.region,
            hosted_zone_id=config.hosted_zone_id,
            domain=config.domain,
            lock_table=v[0],
            history_table=v[1],
            colors=v[2],
        )
    )
    CutoverEnv(f"{env}-cutover-env", CutoverEnvArgs(env, env_output.apply(json.dumps)))
    return {
        # what each color runs, pinned: cutover's Pulumi deployer records it in the release state
        "imageDigests": _image_digests(config.image_repository, images),
        "cutover_env": env_output,
        "vpcId": vpc_id,
        "databaseAddress": database.instance.address,
        "loadBalancers": {c: balancers[c].alb.dns_name for c in COLORS},
        "targetGroups": {c: balancers[c].target_group.arn for c in COLORS},
        "lockTable": state.locks.name,
        "historyTable": state.history.name,
        "serviceUrl": f"https://{config.domain}",
    }


def _release_state_item(environment: str) -> str | None:
    """cutover's release state item, read when the program runs (None before the lock table
    exists, i.e. on the first `up`)."""
    try:
        found = aws.dynamodb.get_table_item(
            table_name=resource_name(environment, "locks"), key=release_state_key(environment)
        )
    except Exception as exc:  # the table does not exist yet, or no access: the committed tags
        pulumi.log.info(f"no cutover release state to read ({exc}): deploying the committed image tags")
        return None
    return str(found.item) if found.item else None


def _image_digests(
    repository: str, images: dict[str, str]
) -> dict[str, pulumi.Output[str]] | dict[str, None]:
    """The digest of each color's image when it lives in ECR (the lookup fails the update if
    the tag does not exist: better before the deploy than in a crash-looping pod)."""
    ecr = ecr_repository(repository)
    if ecr is None:
        return {color: None for color in COLORS}
    registry, name = ecr
    return {
        color: aws.ecr.get_image_output(
            registry_id=registry, repository_name=name, image_tag=images[color]
        ).image_digest
        for color in COLORS
    }
