"""The whole program: config in, components built in order, outputs out."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from cutover_infra.components.access_logs import AccessLogs, AccessLogsArgs
from cutover_infra.components.app import AppDatabase
from cutover_infra.components.certificate import Certificate, CertificateArgs
from cutover_infra.components.cluster import Cluster, ClusterArgs
from cutover_infra.components.database import Database, DatabaseArgs
from cutover_infra.components.load_balancer import LoadBalancer, LoadBalancerArgs
from cutover_infra.components.network import Network, NetworkArgs
from cutover_infra.components.registry import repository_name
from cutover_infra.components.release_state import ReleaseState, ReleaseStateArgs
from cutover_infra.components.service import BlueGreenService, BlueGreenServiceArgs, ServiceBalancer
from cutover_infra.config import COLORS, StackConfig
from cutover_infra.values import (
    LiveTraffic,
    deployed_images,
    ecr_repository_url,
    is_missing_item_error,
    live_traffic,
    lock_key,
    lock_refusal,
    release_state_key,
    resource_name,
    traffic_records_regex,
    unreadable_lock_table,
    with_stack_tags,
)

LOCK_OWNER_ENV = "CUTOVER_LOCK_OWNER"  # set by cutover's Pulumi deployer to its lease owner


def build(config: StackConfig, kubeconfig: pulumi.Output[str] | None = None) -> dict[str, Any]:
    """Declare every resource of the stack; return what it exports."""
    env = config.environment
    for service in config.services:
        _refuse_while_locked(service.cutover_env, env)
    _refuse_orphaned_release_state(config)
    _tag_with_tier(config)
    if config.teardown:
        pulumi.log.warn(
            f"cutover:teardown is true: every deletion protection of {env} is lifted so that "
            "`pulumi destroy` can remove it (RDS keeps a final snapshot). Unset it to keep the stack."
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
    app_database: AppDatabase | None = None
    database: Database | None = None
    if config.needs_database:
        database = Database(
            f"{env}-database",
            DatabaseArgs(
                env, config.database, vpc_id, private, cluster.node_security_group_id, config.protect
            ),
        )
        app_database = AppDatabase(
            address=database.instance.address,
            port=database.instance.port,
            name=config.database.name,
            instance_arn=database.instance.arn,
            resource_id=database.resource_id,
            master_secret_arn=database.secret_arn,
            cidr=config.database.cidr,
        )
    # The listeners' default certificate first (config.default_service: it cannot be detached).
    ordered = sorted(config.services, key=lambda s: s.name != config.default_service)
    certificates: dict[str, pulumi.Input[str]] = {
        service.name: Certificate(
            f"{service.cutover_env}-certificate",
            CertificateArgs(env, service.domain, config.hosted_zone_id),
        ).arn
        for service in ordered
    }
    state = ReleaseState(f"{env}-release-state", ReleaseStateArgs(env, config.protect))
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
    balancers: dict[str, LoadBalancer] = {}
    for color in COLORS:
        balancers[color] = LoadBalancer(
            f"{env}-{color}-lb",
            LoadBalancerArgs(
                environment=env,
                color=color,
                vpc_id=vpc_id,
                vpc_cidr=vpc_cidr,
                public_subnet_ids=public,
                certificates=certificates,
                node_security_group_id=cluster.node_security_group_id,
                app_ports=[service.port for service in config.services],
                access_logs=access_logs,
                deletion_protection=config.protect,
                idle_timeout_seconds=config.load_balancer.idle_timeout_seconds,
            ),
        )
    attach = {
        color: ServiceBalancer(
            balancer=balancers[color],
            dns_name=balancers[color].alb.dns_name,
            zone_id=balancers[color].alb.zone_id,
            arn=balancers[color].alb.arn,
            https_listener_arn=balancers[color].https_listener.arn,
        )
        for color in COLORS
    }
    account = aws.get_caller_identity().account_id if config.registry.create else ""
    services: dict[str, BlueGreenService] = {}
    for service in config.services:
        live = _live_traffic(config, service.domain)
        repository = (
            ecr_repository_url(account, config.region, repository_name(env, service.name))
            if config.registry.create
            else service.image_repository
        )
        services[service.name] = BlueGreenService(
            f"{service.cutover_env}-service",
            BlueGreenServiceArgs(
                environment=env,
                service=service,
                chart=service.chart or config.chart,
                region=config.region,
                hosted_zone_id=config.hosted_zone_id,
                vpc_id=vpc_id,
                vpc_cidr=vpc_cidr,
                balancers=attach,
                image_repository=repository,
                images=deployed_images(
                    _release_state_item(env, service.cutover_env),
                    {color: service.colors[color].image for color in COLORS},
                ),
                weights=live.weights,
                generation=live.generation,
                ttl=config.traffic.ttl,
                stickiness_seconds=config.traffic.stickiness_seconds,
                lock_table=state.locks.name,
                history_table=state.history.name,
                provider=cluster.provider,
                oidc_provider_arn=cluster.oidc_provider_arn,
                issuer_url=cluster.issuer_url,
                idle_timeout_seconds=config.load_balancer.idle_timeout_seconds,
                database=app_database,
                create_registry=config.registry.create,
                keep_images=config.registry.keep_images,
                protect=config.protect,
                teardown=config.teardown,
                workload_dependencies=list(cluster.workload_dependencies),
            ),
        )
    outputs: dict[str, Any] = {
        # per service: what cutover reads (`cutover_envs.<service>`, also in SSM), what each
        # color runs, pinned (cutover's Pulumi deployer records it in the release state)
        "cutover_envs": {name: s.cutover_env for name, s in services.items()},
        "imageDigests": {name: s.image_digests for name, s in services.items()},
        "imageRepositories": {name: s.image_repository for name, s in services.items()},
        "targetGroups": {
            name: {c: tg.arn for c, tg in s.target_groups.items()} for name, s in services.items()
        },
        "serviceUrls": {service.name: f"https://{service.domain}" for service in config.services},
        "vpcId": vpc_id,
        "loadBalancers": {c: balancers[c].alb.dns_name for c in COLORS},
        "accessLogsBucket": access_logs.name,  # <color>/AWSLogs/<account>/elasticloadbalancing/...
        "lockTable": state.locks.name,
        "historyTable": state.history.name,
    }
    if database is not None:
        outputs["databaseAddress"] = database.instance.address
    single = [s for s in config.services if s.cutover_env == env]
    if single:  # the single-service layout's outputs, for the scripts that read them
        outputs["cutover_env"] = services[single[0].name].cutover_env
    return outputs


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


def _release_state_item(environment: str, cutover_env: str) -> str | None:
    """A service's release state item, read when the program runs (None before the lock table
    exists, i.e. on the first `up`, and before the service's first release)."""
    return _lock_table_item(
        environment, release_state_key(cutover_env), f"cutover's release state of {cutover_env}"
    )


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


def _refuse_orphaned_release_state(config: StackConfig) -> None:
    """Stop when the single-service layout's release state exists but no service carries on its
    name: the upgrade forgot `cutoverEnv`, and going on would replace that service's
    resources and deploy its committed images over the ones cutover released."""
    env = config.environment
    if any(s.cutover_env == env for s in config.services):
        return
    if _release_state_item(env, env) is None:
        return
    refusal = (
        f"cutover's release state of {env} exists, but no service of cutover:services has cutoverEnv {env}: "
        f"the service this stack ran before it listed services would be replaced and lose its release state; "
        f"fix: pulumi config set --path cutover:services.<that service>.cutoverEnv {env} (docs/onboarding.md)"
    )
    if pulumi.runtime.is_dry_run():
        pulumi.log.warn(refusal)
        return
    raise pulumi.RunError(refusal)


def _live_traffic(config: StackConfig, domain: str) -> LiveTraffic:
    """The weights and generation Route53 serves now for `domain` (the initial ones before
    the first `up`): declaring them makes any update of the records a no-op for traffic."""
    found = aws.route53.get_records(zone_id=config.hosted_zone_id, name_regex=traffic_records_regex(domain))
    live = live_traffic(
        [_record(r) for r in found.resource_record_sets or []],
        domain,
        dict(config.traffic.initial_weights),
    )
    if live.live:
        pulumi.log.info(
            f"{domain}: traffic as Route53 serves it: {live.weights}, generation {live.generation}"
        )
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


def _refuse_while_locked(cutover_env: str, environment: str) -> None:
    """Stop here while a cutover operation holds a service's release lock (unless this run is
    that operation's own deployer): an `up` then could undo what it is doing."""
    item = _lock_table_item(environment, lock_key(cutover_env), f"cutover's release lock of {cutover_env}")
    refusal = lock_refusal(item, cutover_env, os.environ.get(LOCK_OWNER_ENV), time.time())
    if refusal is None:
        return
    if pulumi.runtime.is_dry_run():
        pulumi.log.warn(refusal)  # a preview changes nothing
        return
    raise pulumi.RunError(refusal)
