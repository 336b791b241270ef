"""VPC over two or more AZs: public subnets (ALBs, NAT) and private subnets (nodes, RDS),
and its flow logs (all traffic, to a CloudWatch log group with a retention).

Only for a VPC this stack creates: an existing cluster's VPC, and its flow logs, are its
owner's."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.values import tags


@dataclass
class NetworkArgs:
    environment: str
    cidr: str
    availability_zones: tuple[str, ...]
    cluster_name: str
    nat_gateway_per_az: bool
    flow_log_retention_days: int = 90


FLOW_LOG_AGGREGATION_SECONDS = 60  # a record per minute (600, the default, delays them 10 min)
FLOW_LOG_DELIVERY_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")


def flow_log_trust_policy(log_group_arn: str) -> str:
    """The flow-log delivery role's trust policy: the VPC Flow Logs service, for flow logs of
    this account and region only (no confused deputy)."""
    partition, region, account = _arn_parts(log_group_arn)
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account},
                        "ArnLike": {
                            "aws:SourceArn": f"arn:{partition}:ec2:{region}:{account}:vpc-flow-log/*"
                        },
                    },
                }
            ],
        }
    )


def flow_log_delivery_policy(log_group_arn: str) -> str:
    """What the delivery role may do: write streams of this log group only. DescribeLogGroups
    is a list call that IAM cannot scope to one group (it reveals names, no log data)."""
    group = log_group_arn.removesuffix(":*")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "WriteThisGroup",
                    "Effect": "Allow",
                    "Action": list(FLOW_LOG_DELIVERY_ACTIONS),
                    "Resource": [group, f"{group}:*"],
                },
                {
                    "Sid": "FindTheGroup",
                    "Effect": "Allow",
                    "Action": "logs:DescribeLogGroups",
                    "Resource": "*",
                },
            ],
        }
    )


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(partition, region, account) of an ARN."""
    fields = arn.split(":")
    return fields[1], fields[3], fields[4]


def subnet_cidrs(cidr: str, count: int) -> tuple[list[str], list[str]]:
    """Split the VPC CIDR: /20-sized private subnets first, then /24 public ones."""
    network = ipaddress.IPv4Network(cidr)
    private = list(network.subnets(new_prefix=max(network.prefixlen + 4, 20)))[:count]
    tail = list(network.subnets(new_prefix=max(network.prefixlen + 4, 20)))[-1]
    public = list(tail.subnets(new_prefix=max(tail.prefixlen + 4, 24)))[:count]
    return [str(s) for s in private], [str(s) for s in public]


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base_tags = tags(args.environment)
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**base_tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=base_tags, opts=child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags=base_tags,
            opts=child,
        )
        private_cidrs, public_cidrs = subnet_cidrs(args.cidr, len(args.availability_zones))
        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        nats: list[aws.ec2.NatGateway] = []
        for index, zone in enumerate(args.availability_zones):
            public = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=public_cidrs[index],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                # The AWS Load Balancer Controller finds internet-facing subnets by this tag.
                tags={
                    **base_tags,
                    **cluster_tag,
                    "kubernetes.io/role/elb": "1",
                    "Name": f"{name}-public-{zone}",
                },
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )
            self.public_subnets.append(public)
            if args.nat_gateway_per_az or not nats:
                address = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags=base_tags, opts=child)
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{zone}",
                        allocation_id=address.id,
                        subnet_id=public.id,
                        tags=base_tags,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                    )
                )
            private = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=private_cidrs[index],
                availability_zone=zone,
                tags={
                    **base_tags,
                    **cluster_tag,
                    "kubernetes.io/role/internal-elb": "1",
                    "Name": f"{name}-private-{zone}",
                },
                opts=child,
            )
            routes = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=self.vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nats[-1].id)],
                tags=base_tags,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}", subnet_id=private.id, route_table_id=routes.id, opts=child
            )
            self.private_subnets.append(private)
        self.flow_log = self._flow_log(name, args, base_tags)
        self.vpc_id = self.vpc.id
        self.cidr = args.cidr
        self.register_outputs(
            {
                "vpcId": self.vpc.id,
                "publicSubnetIds": [s.id for s in self.public_subnets],
                "privateSubnetIds": [s.id for s in self.private_subnets],
            }
        )

    def _flow_log(self, name: str, args: NetworkArgs, base_tags: dict[str, str]) -> aws.ec2.FlowLog:
        """Every accepted and rejected flow of the VPC, to a log group that expires them, through
        a role only VPC Flow Logs can assume and that can write only to that group."""
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/aws/vpc/{name}/flow-logs",
            retention_in_days=args.flow_log_retention_days,
            tags=base_tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=group.arn.apply(flow_log_trust_policy),
            tags=base_tags,
            opts=child,
        )
        delivery = aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.name,
            policy=group.arn.apply(flow_log_delivery_policy),
            opts=child,
        )
        return aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=FLOW_LOG_AGGREGATION_SECONDS,
            tags=base_tags,
            # The role must be able to write before the first delivery.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[delivery]),
        )
