"""Who can reach a cluster this stack creates: EKS access entries (authentication mode API),
one per IAM role named in `cutover:cluster.access`, each with one cluster-wide access policy.

An existing cluster's access is its owner's business: nothing here runs for one."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.config import ClusterAccess

# What each level of `cutover:cluster.access` gets, cluster-wide:
# - admins: people operating the cluster.
# - release: the CI role that runs `pulumi up`. It installs cluster-scoped objects (the Load
#   Balancer Controller's CRDs, ClusterRoles and webhooks, the colors' Namespaces), which
#   AmazonEKSAdminPolicy (namespaced admin, no cluster-scoped writes) does not allow; hence
#   AmazonEKSClusterAdminPolicy.
# - preview: the CI role that runs `pulumi preview`: read-only.
ACCESS_POLICIES = {
    "admins": "AmazonEKSClusterAdminPolicy",
    "release": "AmazonEKSClusterAdminPolicy",
    "preview": "AmazonEKSViewPolicy",
}


@dataclass(frozen=True)
class Grant:
    """One role's access entry and the access policy associated with it."""

    key: str  # the access entry's resource-name suffix: from the role ARN alone
    principal_arn: str
    policy_arn: str

    @property
    def association_key(self) -> str:
        """The association's suffix: the entry's and the policy's, never the level's (moving
        a role between two levels with the same policy then changes nothing in AWS)."""
        return f"{self.key}-{self.policy_arn.rsplit('/', 1)[1]}"


def entry_key(principal_arn: str) -> str:
    """A resource-name suffix unique to the role ARN: readable, plus a hash of the whole ARN
    (`ci.release` and `ci_release` read alike). EKS admits one access entry per principal,
    so the entry's name must not change when the role moves between access levels: a
    rename is a create-before-delete, which EKS refuses (ResourceInUseException)."""
    account, role = principal_arn.split(":")[4], principal_arn.split(":role/", 1)[1]
    digest = hashlib.sha256(principal_arn.encode()).hexdigest()[:8]
    return f"{account}-{re.sub(r'[^A-Za-z0-9-]+', '-', role)}-{digest}"


def access_policy_arn(principal_arn: str, policy: str) -> str:
    """The EKS access policy's ARN in the principal's partition (aws, aws-cn, aws-us-gov)."""
    partition = principal_arn.split(":")[1]
    return f"arn:{partition}:eks::aws:cluster-access-policy/{policy}"


def grants(access: ClusterAccess) -> list[Grant]:
    """Every access entry to declare, in config order (config rejects a role listed twice)."""
    found = []
    for level, policy in ACCESS_POLICIES.items():
        for arn in getattr(access, level):
            found.append(Grant(entry_key(arn), arn, access_policy_arn(arn, policy)))
    return found


def grant_access(
    name: str,
    cluster_name: pulumi.Input[str],
    access: ClusterAccess,
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> list[pulumi.Resource]:
    """Declare the access entries and their policy associations; return the associations
    (whatever talks to the cluster through this stack waits for them)."""
    associations: list[pulumi.Resource] = []
    for grant in grants(access):
        entry = aws.eks.AccessEntry(
            f"{name}-access-{grant.key}",
            cluster_name=cluster_name,
            principal_arn=grant.principal_arn,
            type="STANDARD",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        associations.append(
            aws.eks.AccessPolicyAssociation(
                f"{name}-access-{grant.association_key}",
                cluster_name=cluster_name,
                principal_arn=entry.principal_arn,  # after its access entry
                policy_arn=grant.policy_arn,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[entry]),
            )
        )
    return associations
