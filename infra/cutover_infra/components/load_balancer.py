"""One ALB per color: HTTPS with a modern TLS policy, HTTP redirected, access logs in the
stack's bucket (components/access_logs.py) under the color's prefix, a target group of type
ip with cookie stickiness, health-checked on /health/ready, and a deregistration delay taken
from the drain budget the chart enforces too."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.budget import DrainBudget
from cutover_infra.components.access_logs import AccessLogs
from cutover_infra.values import APP_PORT, TLS_POLICY, resource_name, tags


@dataclass
class LoadBalancerArgs:
    environment: str
    color: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Input[str]]
    certificate_arn: pulumi.Input[str]
    node_security_group_id: pulumi.Input[str]
    budget: DrainBudget
    stickiness_seconds: int
    access_logs: AccessLogs  # the stack's access logs bucket; this ALB writes under its color
    deletion_protection: bool  # cutover:protect (lifted by cutover:teardown), not the stack's name
    # cutover:loadBalancer.idleTimeoutSeconds; the app's keep-alive must outlive it (else 502s)
    idle_timeout_seconds: int = 60


class LoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:traffic:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base_tags = tags(args.environment, color=args.color)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description=f"ALB of ledger-{args.color}: 80 and 443 from anywhere, the app port to the VPC",
            vpc_id=args.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="HTTPS", protocol="tcp", from_port=443, to_port=443, cidr_blocks=["0.0.0.0/0"]
                ),
                aws.ec2.SecurityGroupIngressArgs(
                    description="HTTP, redirected",
                    protocol="tcp",
                    from_port=80,
                    to_port=80,
                    cidr_blocks=["0.0.0.0/0"],
                ),
            ],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="to the pods",
                    protocol="tcp",
                    from_port=APP_PORT,
                    to_port=APP_PORT,
                    cidr_blocks=[args.vpc_cidr],
                )
            ],
            tags=base_tags,
            opts=child,
        )
        # The pods (ip targets) accept the app port from this ALB.
        aws.ec2.SecurityGroupRule(
            f"{name}-to-pods",
            type="ingress",
            description=f"ALB of ledger-{args.color} to the pods",
            security_group_id=args.node_security_group_id,
            source_security_group_id=self.security_group.id,
            protocol="tcp",
            from_port=APP_PORT,
            to_port=APP_PORT,
            opts=child,
        )
        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=resource_name(args.environment, args.color),
            load_balancer_type="application",
            internal=False,
            security_groups=[self.security_group.id],
            subnets=args.public_subnet_ids,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            idle_timeout=args.idle_timeout_seconds,
            access_logs=args.access_logs.for_load_balancer(args.color),
            tags=base_tags,
            # AWS checks that it may write to the bucket when logging is turned on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.access_logs.policy]),
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            name=resource_name(args.environment, args.color),
            port=APP_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=args.budget.deregistration_delay,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                path="/health/ready",
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
            tags=base_tags,
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=self.alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=args.certificate_arn,
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.target_group.arn)
            ],
            tags=base_tags,
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        port="443", protocol="HTTPS", status_code="HTTP_301"
                    ),
                )
            ],
            tags=base_tags,
            opts=child,
        )
        self.register_outputs(
            {
                "dnsName": self.alb.dns_name,
                "zoneId": self.alb.zone_id,
                "targetGroupArn": self.target_group.arn,
            }
        )
