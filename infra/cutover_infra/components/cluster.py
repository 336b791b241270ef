"""The Kubernetes cluster: a new EKS cluster (managed node group, OIDC provider), or an
existing one reached through a secret kubeconfig; then the AWS Load Balancer Controller
with its own IAM role (IRSA), which binds pods to the ALB target groups."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from cutover_infra.config import ClusterConfig
from cutover_infra.values import tags

LBC_NAMESPACE = "kube-system"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
LBC_CHART_VERSION = "1.13.0"

# The controller's permissions for TargetGroupBinding with ip targets: describe, register
# and deregister targets, and manage the ingress rules it adds to node security groups.
LBC_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeAccountAttributes", "ec2:DescribeAvailabilityZones", "ec2:DescribeInstances",
                "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets",
                "ec2:DescribeTags", "ec2:DescribeVpcs", "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags",
                "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
                "elasticloadbalancing:DescribeTargetGroupAttributes",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
            "Resource": "arn:aws:elasticloadbalancing:*:*:targetgroup/cutover-*/*",
        },
        {
            "Effect": "Allow",
            "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
            "Resource": "arn:aws:ec2:*:*:security-group/*",
        },
    ],
}  # fmt: skip


@dataclass
class ClusterArgs:
    environment: str
    name: str
    config: ClusterConfig
    region: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    private_subnet_ids: list[pulumi.Input[str]]
    kubeconfig: pulumi.Output[str] | None = None


def _assume(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def kubeconfig_for(name: str, endpoint: str, certificate: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no static credentials)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": endpoint, "certificate-authority-data": certificate}}
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", name, "--region", region],
                        }
                    },
                }
            ],
        }
    )


class Cluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base_tags = tags(args.environment)
        existing = args.config.existing
        if existing is None:
            role = aws.iam.Role(
                f"{name}-cluster-role",
                assume_role_policy=_assume("eks.amazonaws.com"),
                tags=base_tags,
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-cluster-policy",
                role=role.name,
                policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
                opts=child,
            )
            self.eks = aws.eks.Cluster(
                f"{name}-eks",
                name=args.name,
                role_arn=role.arn,
                version=args.config.version,
                vpc_config=aws.eks.ClusterVpcConfigArgs(
                    subnet_ids=[*args.private_subnet_ids, *args.public_subnet_ids],
                    endpoint_private_access=True,
                    endpoint_public_access=True,
                ),
                enabled_cluster_log_types=["api", "audit", "authenticator"],
                tags=base_tags,
                opts=child,
            )
            node_role = aws.iam.Role(
                f"{name}-node-role",
                assume_role_policy=_assume("ec2.amazonaws.com"),
                tags=base_tags,
                opts=child,
            )
            for index, policy in enumerate(
                ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
            ):
                aws.iam.RolePolicyAttachment(
                    f"{name}-node-policy-{index}",
                    role=node_role.name,
                    policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                    opts=child,
                )
            aws.eks.NodeGroup(
                f"{name}-nodes",
                cluster_name=self.eks.name,
                node_role_arn=node_role.arn,
                subnet_ids=args.private_subnet_ids,
                instance_types=[args.config.node_instance_type],
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    desired_size=args.config.node_desired,
                    min_size=args.config.node_min,
                    max_size=args.config.node_max,
                ),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                tags=base_tags,
                opts=child,
            )
            issuer = self.eks.identities.apply(lambda ids: ids[0].oidcs[0].issuer)  # type: ignore[index]
            oidc = aws.iam.OpenIdConnectProvider(
                f"{name}-oidc",
                url=issuer,
                client_id_lists=["sts.amazonaws.com"],
                thumbprint_lists=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
                tags=base_tags,
                opts=child,
            )
            oidc_arn: pulumi.Input[str] = oidc.arn
            issuer_url: pulumi.Input[str] = issuer
            self.node_security_group_id: pulumi.Output[str] = self.eks.vpc_config.cluster_security_group_id
            kubeconfig: pulumi.Output[str] = pulumi.Output.all(
                self.eks.name, self.eks.endpoint, self.eks.certificate_authority.data
            ).apply(lambda v: kubeconfig_for(v[0], v[1], v[2], args.region))
            cluster_name: pulumi.Input[str] = self.eks.name
        else:
            assert args.kubeconfig is not None  # config.parse requires it
            kubeconfig = args.kubeconfig
            oidc_arn, issuer_url = existing.oidc_provider_arn, existing.oidc_issuer_url
            self.node_security_group_id = pulumi.Output.from_input(existing.node_security_group_id)
            cluster_name = existing.name
        secret_kubeconfig: pulumi.Output[str] = pulumi.Output.secret(kubeconfig)
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=secret_kubeconfig, opts=child)
        self._load_balancer_controller(name, args, oidc_arn, issuer_url, cluster_name, base_tags)
        self.register_outputs({"nodeSecurityGroupId": self.node_security_group_id})

    def _load_balancer_controller(
        self,
        name: str,
        args: ClusterArgs,
        oidc_arn: pulumi.Input[str],
        issuer_url: pulumi.Input[str],
        cluster_name: pulumi.Input[str],
        base_tags: dict[str, str],
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        trust = pulumi.Output.all(oidc_arn, issuer_url).apply(
            lambda v: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Federated": v[0]},
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Condition": {
                                "StringEquals": {
                                    f"{v[1].removeprefix('https://')}:sub": f"system:serviceaccount:{LBC_NAMESPACE}:{LBC_SERVICE_ACCOUNT}",
                                    f"{v[1].removeprefix('https://')}:aud": "sts.amazonaws.com",
                                }
                            },
                        }
                    ],
                }
            )
        )
        role = aws.iam.Role(f"{name}-lbc-role", assume_role_policy=trust, tags=base_tags, opts=child)
        policy = aws.iam.Policy(
            f"{name}-lbc-policy", policy=json.dumps(LBC_POLICY), tags=base_tags, opts=child
        )
        aws.iam.RolePolicyAttachment(f"{name}-lbc-attach", role=role.name, policy_arn=policy.arn, opts=child)
        self.load_balancer_controller = k8s.helm.v3.Release(
            f"{name}-lbc",
            k8s.helm.v3.ReleaseArgs(
                name="aws-load-balancer-controller",
                chart="aws-load-balancer-controller",
                version=LBC_CHART_VERSION,
                namespace=LBC_NAMESPACE,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo="https://aws.github.io/eks-charts"),
                values={
                    "clusterName": cluster_name,
                    "region": args.region,
                    "vpcId": args.vpc_id,
                    "serviceAccount": {
                        "name": LBC_SERVICE_ACCOUNT,
                        "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                    },
                },
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
