"""Route53 blue/green: weighted alias records for the service name, a direct name per
color, a health check per color, and the TXT record holding the traffic generation cutover
uses for compare-and-swap.

cutover owns the live weights and generation. The program declares exactly what Route53
serves when it runs (read with the getRecords data source, `values.live_traffic`), so an
update of a record (new alias target, replaced health check) sends the live values, never
those of the last `up`. `ignore_changes` would not do: Pulumi re-sends the value in its
state, which is stale after any cutover."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.values import GENERATION_PREFIX, tags


@dataclass
class ColorTarget:
    dns_name: pulumi.Input[str]
    zone_id: pulumi.Input[str]


@dataclass
class TrafficArgs:
    environment: str
    service: str
    domain: str
    hosted_zone_id: str
    weights: dict[str, int]  # the live weights (the initial ones before the records exist)
    generation: int  # the live traffic generation (0 before the record exists)
    ttl: int
    targets: dict[str, ColorTarget]
    ready_path: str = "/health/ready"  # Route53's health check of each color


class Traffic(pulumi.ComponentResource):
    def __init__(self, name: str, args: TrafficArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:traffic:Traffic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.health_checks: dict[str, aws.route53.HealthCheck] = {}
        for color, target in args.targets.items():
            direct = f"{color}.{args.domain}"
            aws.route53.Record(
                f"{name}-{color}-direct",
                zone_id=args.hosted_zone_id,
                name=direct,
                type="A",
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=target.dns_name, zone_id=target.zone_id, evaluate_target_health=True
                    )
                ],
                opts=child,
            )
            health = aws.route53.HealthCheck(
                f"{name}-{color}-health",
                fqdn=direct,
                port=443,
                type="HTTPS",
                resource_path=args.ready_path,
                request_interval=10,
                failure_threshold=3,
                measure_latency=True,
                tags={
                    **tags(args.environment, service=args.service, color=color),
                    "Name": f"{args.service}-{color}-{args.environment}",
                },
                opts=child,
            )
            self.health_checks[color] = health
            aws.route53.Record(
                f"{name}-{color}-weighted",
                zone_id=args.hosted_zone_id,
                name=args.domain,
                type="A",
                set_identifier=color,
                weighted_routing_policies=[
                    aws.route53.RecordWeightedRoutingPolicyArgs(weight=args.weights[color])
                ],
                health_check_id=health.id,
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=target.dns_name, zone_id=target.zone_id, evaluate_target_health=True
                    )
                ],
                opts=child,
            )
        aws.route53.Record(
            f"{name}-generation",
            zone_id=args.hosted_zone_id,
            name=f"_cutover.{args.domain}",
            type="TXT",
            ttl=args.ttl,
            records=[f"{GENERATION_PREFIX}{args.generation}"],
            opts=child,
        )
        self.register_outputs({"healthCheckIds": {c: h.id for c, h in self.health_checks.items()}})
