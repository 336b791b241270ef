"""The KMS key EKS envelope-encrypts Kubernetes Secrets with (a cluster this stack creates).

No key policy is passed, so the key gets KMS's default one: the account root may do
everything, which hands the key's administration and use to IAM policies in the account
(the cluster role's grant below, the admins' own policies). EKS encrypts and decrypts with
the cluster role; the identity that creates the cluster also needs kms:DescribeKey and
kms:CreateGrant on the key through IAM (the release and admin roles do)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

# What EKS's KMS plugin does with the key through the cluster role.
CLUSTER_ROLE_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey")
DELETION_WINDOW_DAYS = 30  # the longest: a key deleted by mistake can be recovered for a month


def key_use_policy(key_arn: str) -> str:
    """The cluster role's inline policy: use of this key only."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EksSecretsEnvelopeEncryption",
                    "Effect": "Allow",
                    "Action": list(CLUSTER_ROLE_KEY_ACTIONS),
                    "Resource": key_arn,
                }
            ],
        }
    )


def secrets_key(
    name: str, cluster_name: str, role: aws.iam.Role, tags: dict[str, str], parent: pulumi.Resource
) -> tuple[aws.kms.Key, aws.iam.RolePolicy]:
    """The key (rotated yearly, 30-day deletion window), its alias, and the cluster role's
    permission to use it: the cluster waits for the policy, or EKS cannot use the key.

    Losing the key loses every Secret in the cluster: destroying the stack schedules its
    deletion, which `aws kms cancel-key-deletion` undoes within the window."""
    child = pulumi.ResourceOptions(parent=parent)
    key = aws.kms.Key(
        f"{name}-secrets-key",
        description=f"EKS envelope encryption of Kubernetes Secrets in {cluster_name}",
        key_usage="ENCRYPT_DECRYPT",
        customer_master_key_spec="SYMMETRIC_DEFAULT",
        enable_key_rotation=True,
        deletion_window_in_days=DELETION_WINDOW_DAYS,
        tags=tags,
        opts=child,
    )
    aws.kms.Alias(
        f"{name}-secrets-key", name=f"alias/{cluster_name}-secrets", target_key_id=key.key_id, opts=child
    )
    policy = aws.iam.RolePolicy(
        f"{name}-secrets-key-use",
        role=role.name,
        policy=key.arn.apply(key_use_policy),
        opts=child,
    )
    return key, policy
