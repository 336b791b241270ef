"""The AWS Load Balancer Controller: its IAM role (IRSA) and its Helm release. It binds the
pods to their ALB target groups (TargetGroupBinding) and injects the readiness gates.

Declared as children of the Cluster component (same URNs as when it lived in cluster.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

LBC_NAMESPACE = "kube-system"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
LBC_CHART_VERSION = "1.13.0"
# A fresh node group takes a few minutes to join and pull the controller's image: the release
# waits (atomic) up to this long for the controller's pods and webhook to be ready.
LBC_HELM_TIMEOUT_SECONDS = 600

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


def irsa_trust_policy(oidc_provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> str:
    """The role's trust policy: only this service account, through the cluster's OIDC provider."""
    issuer = issuer_url.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )


def install_load_balancer_controller(
    name: str,
    *,
    parent: pulumi.Resource,
    provider: k8s.Provider,
    cluster_name: pulumi.Input[str],
    region: str,
    vpc_id: pulumi.Input[str],
    oidc_provider_arn: pulumi.Input[str],
    issuer_url: pulumi.Input[str],
    tags: dict[str, str],
    after: Sequence[pulumi.Resource] = (),
) -> k8s.helm.v3.Release:
    """The controller's role, policy and Helm release; the release waits for `after` (the
    node group of a cluster this stack creates: nothing can run before it)."""
    child = pulumi.ResourceOptions(parent=parent)
    trust = pulumi.Output.all(oidc_provider_arn, issuer_url).apply(
        lambda v: irsa_trust_policy(v[0], v[1], LBC_NAMESPACE, LBC_SERVICE_ACCOUNT)
    )
    role = aws.iam.Role(f"{name}-lbc-role", assume_role_policy=trust, tags=tags, opts=child)
    policy = aws.iam.Policy(f"{name}-lbc-policy", policy=json.dumps(LBC_POLICY), tags=tags, opts=child)
    attachment = aws.iam.RolePolicyAttachment(
        f"{name}-lbc-attach", role=role.name, policy_arn=policy.arn, opts=child
    )
    return k8s.helm.v3.Release(
        f"{name}-lbc",
        k8s.helm.v3.ReleaseArgs(
            name="aws-load-balancer-controller",
            chart="aws-load-balancer-controller",
            version=LBC_CHART_VERSION,
            namespace=LBC_NAMESPACE,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo="https://aws.github.io/eks-charts"),
            values={
                "clusterName": cluster_name,
                "region": region,
                "vpcId": vpc_id,
                "serviceAccount": {
                    "name": LBC_SERVICE_ACCOUNT,
                    "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                },
            },
            # Wait for the controller (and its webhooks) to be ready; undo a failed install.
            atomic=True,
            timeout=LBC_HELM_TIMEOUT_SECONDS,
        ),
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=[attachment, *after]),
    )
