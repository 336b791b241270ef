"""The whole program: config in, components built in order, outputs out."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from cutover_infra.components.access_logs import AccessLogs, AccessLogsArgs
from cutover_infra.components.app import App, AppArgs, AppDatabase
from cutover_infra.components.certificate import Certificate, CertificateArgs
from cutover_infra.components.cluster import Cluster, ClusterArgs
from cutover_infra.components.database import DATABASE_NAME, Database, DatabaseArgs
from cutover_infra.components.load_balancer import LoadBalancer, LoadBalancerArgs
from cutover_infra.components.network import Network, NetworkArgs
from cutover_infra.components.registry import Registry, RegistryArgs, repository_name
from cutover_infra.components.release_state import CutoverEnv, CutoverEnvArgs, ReleaseState, ReleaseStateArgs
from cutover_infra.components.traffic import ColorTarget, Traffic, TrafficArgs
from cutover_infra.config import COLORS, StackConfig
from cutover_infra.values import (
    LiveTraffic,
    cutover_env,
    deployed_images,
    ecr_repository,
    ecr_repository_url,
    is_missing_item_error,
    live_traffic,
    lock_key,
    lock_refusal,
    release_state_key,
    resource_name,
    split_image,
    traffic_records_regex,
    unreadable_lock_table,
    with_stack_tags,
)

LOCK_OWNER_ENV = "CUTOVER_LOCK_OWNER"  # set by cutover's Pulumi deployer to its lease owner


def build(config: StackConfig, kubeconfig: pulumi.Output[str] | None = None) -> dict[str, Any]:
    """Declare every resource of the stack; return what it exports."""
    env = config.environment
    _refuse_while_locked(env)
    _tag_with_tier(config)
    if config.teardown:
        pulumi.log.warn(
            f"cutover:teardown is true: every deletion protection of {env} is lifted so that "
            "`pulumi destroy` can remove it (RDS keeps a final snapshot). Unset it to keep the stack."
        )
    registry: Registry | None = None
    image_repository = config.image_repository
    if config.registry.create:
        registry = Registry(
            f"{env}-registry",
            RegistryArgs(env, config.registry.keep_images, config.protect, config.teardown),
        )
        image_repository = ecr_repository_url(
            aws.get_caller_identity().account_id, config.region, repository_name(env)
        )
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
                config.network.flow_log_retention_days,
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
    images = deployed_images(
        _release_state_item(env), {color: config.colors[color].image for color in COLORS}
    )

    access_logs = AccessLogs(
        f"{env}-access-logs",
        AccessLogsArgs(
            environment=env,
            region=config.region,
            prefixes=COLORS,
            retention_days=config.load_balancer.access_log_retention_days,
            protect=config.protect,
            teardown=config.teardown,
        ),
    )
    app_database = AppDatabase(
        address=database.instance.address,
        port=database.instance.port,
        name=DATABASE_NAME,
        instance_arn=database.instance.arn,
        resource_id=database.resource_id,
        master_secret_arn=database.secret_arn,
        cidr=config.database.cidr,
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
                access_logs=access_logs,
                deletion_protection=config.protect,
                idle_timeout_seconds=config.load_balancer.idle_timeout_seconds,
            ),
        )
        apps[color] = App(
            f"{env}-{color}-app",
            AppArgs(
                environment=env,
                color=color,
                region=config.region,
                image_repository=image_repository,
                image_tag=images[color],
                replicas=config.colors[color].replicas,
                database=app_database,
                target_group_arn=balancers[color].target_group.arn,
                budget=config.drain,
                vpc_cidr=vpc_cidr,
                provider=cluster.provider,
                oidc_provider_arn=cluster.oidc_provider_arn,
                issuer_url=cluster.issuer_url,
                idle_timeout_seconds=config.load_balancer.idle_timeout_seconds,
                keep_alive_seconds=config.load_balancer.app_keep_alive_seconds,
            ),
            # After the Load Balancer Controller when this stack installs it, and destroyed
            # before it (the TargetGroupBindings' finalizers need the controller).
            opts=pulumi.ResourceOptions(depends_on=cluster.workload_dependencies),
        )
    live = _live_traffic(config)
    Traffic(
        f"{env}-traffic",
        TrafficArgs(
            environment=env,
            domain=config.domain,
            hosted_zone_id=config.hosted_zone_id,
            weights=live.weights,
            generation=live.generation,
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
        "imageDigests": _image_digests(image_repository, images),
        "imageRepository": registry.url if registry is not None else image_repository,
        "cutover_env": env_output,
        "vpcId": vpc_id,
        "databaseAddress": database.instance.address,
        "loadBalancers": {c: balancers[c].alb.dns_name for c in COLORS},
        "targetGroups": {c: balancers[c].target_group.arn for c in COLORS},
        "accessLogsBucket": access_logs.name,  # <color>/AWSLogs/<account>/elasticloadbalancing/...
        "lockTable": state.locks.name,
        "historyTable": state.history.name,
        "serviceUrl": f"https://{config.domain}",
    }


def _tag_with_tier(config: StackConfig) -> None:
    """Every tagged AWS resource of the stack carries its tier, and `teardown=true` while
    cutover:teardown is set: what the policy pack's production checks read (never the
    stack's name), and a teardown shows in every resource of the preview."""

    def add(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        found = args.props.get("tags")
        if not args.type_.startswith("aws:") or found is None:
            return None

        def tagged(resource_tags: Mapping[str, Any] | None) -> dict[str, Any]:
            return with_stack_tags(resource_tags or {}, tier=config.tier, teardown=config.teardown)

        props = dict(args.props)
        props["tags"] = (
            tagged(found) if isinstance(found, Mapping) else pulumi.Output.from_input(found).apply(tagged)
        )
        return pulumi.ResourceTransformationResult(props, args.opts)

    pulumi.runtime.register_stack_transformation(add)


def _release_state_item(environment: str) -> str | None:
    """cutover's release state item, read when the program runs (None before the lock table
    exists, i.e. on the first `up`, and before the first release)."""
    return _lock_table_item(environment, release_state_key(environment), "cutover's release state")


def _lock_table_item(environment: str, key: str, what: str) -> str | None:
    """One item of the environment's lock table, or None when it or the table does not exist.

    Any other failure (access denied, throttling) stops an `up`: going on would deploy the
    committed image tags over what cutover released, or ignore its lock. A preview, which
    changes nothing, goes on with a warning."""
    table = resource_name(environment, "locks")
    try:
        found = aws.dynamodb.get_table_item(table_name=table, key=key)
    except Exception as exc:
        if is_missing_item_error(str(exc)):
            return None  # no item (before the first release / nothing holds the lock), or no table yet
        problem = unreadable_lock_table(what, table, str(exc))
        if pulumi.runtime.is_dry_run():
            pulumi.log.warn(f"{problem} (preview: going on as if there were none)")
            return None
        raise pulumi.RunError(problem) from None
    return str(found.item) if found.item else None


def _live_traffic(config: StackConfig) -> LiveTraffic:
    """The weights and generation Route53 serves now (the initial ones before the first
    `up`): declaring them makes any update of the records a no-op for traffic."""
    found = aws.route53.get_records(
        zone_id=config.hosted_zone_id, name_regex=traffic_records_regex(config.domain)
    )
    live = live_traffic(
        [_record(r) for r in found.resource_record_sets or []],
        config.domain,
        dict(config.traffic.initial_weights),
    )
    if live.live:
        pulumi.log.info(f"traffic as Route53 serves it: {live.weights}, generation {live.generation}")
    return live


def _record(record: Any) -> dict[str, Any]:
    """One getRecords record set as plain data (its Route53 field names)."""
    return {
        "name": record.get("name"),
        "type": record.get("type"),
        "setIdentifier": record.get("set_identifier"),
        "weight": record.get("weight"),
        "resourceRecords": [{"value": v.get("value")} for v in record.get("resource_records") or []],
    }


def _refuse_while_locked(environment: str) -> None:
    """Stop here while a cutover operation holds the environment's release lock (unless this
    run is that operation's own deployer): an `up` then could undo what it is doing."""
    item = _lock_table_item(environment, lock_key(environment), "cutover's release lock")
    refusal = lock_refusal(item, environment, os.environ.get(LOCK_OWNER_ENV), time.time())
    if refusal is None:
        return
    if pulumi.runtime.is_dry_run():
        pulumi.log.warn(refusal)  # a preview changes nothing
        return
    raise pulumi.RunError(refusal)


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
