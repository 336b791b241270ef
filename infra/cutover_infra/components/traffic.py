"""Route53 blue/green: weighted alias records for the service name (weights owned by
cutover after creation), a direct name per color, a health check per color, and the TXT
record holding the traffic generation cutover uses for compare-and-swap."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.values import tags


@dataclass
class ColorTarget:
    dns_name: pulumi.Input[str]
    zone_id: pulumi.Input[str]


@dataclass
class TrafficArgs:
    environment: str
    domain: str
    hosted_zone_id: str
    initial_weights: dict[str, int]
    ttl: int
    targets: dict[str, ColorTarget]


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
                resource_path="/health/ready",
                request_interval=10,
                failure_threshold=3,
                measure_latency=True,
                tags={**tags(args.environment, color=color), "Name": f"ledger-{color}-{args.environment}"},
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
                    aws.route53.RecordWeightedRoutingPolicyArgs(weight=args.initial_weights[color])
                ],
                health_check_id=health.id,
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=target.dns_name, zone_id=target.zone_id, evaluate_target_health=True
                    )
                ],
                # cutover owns the live weights: `pulumi up` sets them once and never again.
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["weightedRoutingPolicies"]),
            )
        aws.route53.Record(
            f"{name}-generation",
            zone_id=args.hosted_zone_id,
            name=f"_cutover.{args.domain}",
            type="TXT",
            ttl=args.ttl,
            records=["cutover-generation=0"],
            # cutover bumps the generation with every weight change, in the same change batch.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["records"]),
        )
        self.register_outputs({"healthCheckIds": {c: h.id for c, h in self.health_checks.items()}})
