"""One ALB per color, shared by every service of the stack: HTTPS with a modern TLS policy
(each service's certificate, chosen by SNI), HTTP redirected, access logs in the stack's
bucket (components/access_logs.py) under the color's prefix. Its HTTPS listener answers 404
to a host no service claims; each service adds its own target group and host rule
(components/service.py). docs/decisions/0008-one-alb-per-color-shared-by-services.md says why one ALB per
color for all services, not one per service."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.components.access_logs import AccessLogs
from cutover_infra.values import TLS_POLICY, resource_name, tags

# The app port of the single-service layout: its pods' ingress rule keeps its old name, so
# upgrading such a stack replaces no security group rule.
SINGLE_SERVICE_PORT = 8000


@dataclass
class LoadBalancerArgs:
    environment: str
    color: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Input[str]]
    # service -> its certificate; the first listed is the listener's default (keep that
    # service first: the default certificate cannot be detached), the others are added
    certificates: dict[str, pulumi.Input[str]]
    node_security_group_id: pulumi.Input[str]
    app_ports: list[int]  # the services' container ports (the ALB reaches the pods on them)
    access_logs: AccessLogs  # the stack's access logs bucket; this ALB writes under its color
    deletion_protection: bool  # cutover:protect (lifted by cutover:teardown), not the stack's name
    # cutover:loadBalancer.idleTimeoutSeconds; every service's keep-alive must outlive it (else 502s)
    idle_timeout_seconds: int = 60


class LoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:traffic:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base_tags = tags(args.environment, color=args.color)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description=f"ALB of the {args.color} color: 80 and 443 from anywhere, the services' ports to the VPC",
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
                    from_port=port,
                    to_port=port,
                    cidr_blocks=[args.vpc_cidr],
                )
                for port in sorted(set(args.app_ports))
            ],
            tags=base_tags,
            # EC2 cannot change a group's description: a group made with another one keeps it
            # (changing it would replace the group, and the ALB and the pods' rule with it).
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["description"]),
        )
        # The pods (ip targets) accept each service's port from this ALB.
        for port in sorted(set(args.app_ports)):
            aws.ec2.SecurityGroupRule(
                f"{name}-to-pods" if port == SINGLE_SERVICE_PORT else f"{name}-to-pods-{port}",
                type="ingress",
                description=f"ALB of the {args.color} color to the pods, port {port}",
                security_group_id=args.node_security_group_id,
                source_security_group_id=self.security_group.id,
                protocol="tcp",
                from_port=port,
                to_port=port,
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
        self.https_listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=self.alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=next(iter(args.certificates.values())),
            # A host no service claims (a scanner on the ALB's own name): nothing to forward to.
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="fixed-response",
                    fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                        content_type="application/json",
                        message_body='{"error":{"code":"unknown_host","message":"no service answers this host"}}',
                        status_code="404",
                    ),
                )
            ],
            tags=base_tags,
            opts=child,
        )
        # The other services' certificates, chosen by SNI (an ALB listener takes 25 by default).
        for service, certificate_arn in list(args.certificates.items())[1:]:
            aws.lb.ListenerCertificate(
                f"{name}-certificate-{service}",
                listener_arn=self.https_listener.arn,
                certificate_arn=certificate_arn,
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
                "httpsListener": self.https_listener.arn,
            }
        )
