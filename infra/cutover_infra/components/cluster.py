"""The Kubernetes cluster: a new EKS cluster (API authentication with access entries, an API
endpoint public to listed ranges only or private, Secrets envelope-encrypted with its own KMS
key, control-plane logs in a log group with a retention, the VPC CNI add-on enforcing
NetworkPolicies, a managed node group, the OIDC provider), or an existing one reached through
a secret kubeconfig; then, unless the stack opts out, the AWS Load
Balancer Controller, which binds pods to the ALB target groups.

For an existing cluster, access entries, the endpoint, encryption, logs, the CNI's
NetworkPolicy enforcement and (by default) the Load Balancer Controller are its owner's
business: nothing here changes them."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from cutover_infra.components.access import grant_access
from cutover_infra.components.kms import secrets_key
from cutover_infra.components.load_balancer_controller import install_load_balancer_controller
from cutover_infra.config import ClusterConfig
from cutover_infra.values import tags

# The VPC CNI add-on's configuration: enforce Kubernetes NetworkPolicies (off by default, and
# the chart's NetworkPolicies are then accepted but do nothing).
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")


def control_plane_log_group(cluster_name: str) -> str:
    """Where EKS writes a cluster's control-plane logs (it creates the group, with no
    retention, when it does not exist)."""
    return f"/aws/eks/{cluster_name}/cluster"


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


@dataclass
class _Reach:
    """How the rest of the stack reaches the cluster, and what it must wait for."""

    cluster_name: pulumi.Input[str]
    kubeconfig: pulumi.Output[str]
    oidc_provider_arn: pulumi.Input[str]
    issuer_url: pulumi.Input[str]
    node_security_group_id: pulumi.Output[str]
    access: list[pulumi.Resource]  # the Kubernetes provider waits: no access, no API call
    nodes: list[pulumi.Resource]  # the Load Balancer Controller waits: nowhere to run before


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
    """`workload_dependencies`: what the colors' releases wait for (and are destroyed before):
    the Load Balancer Controller when this stack installs it, so that its TargetGroupBinding
    finalizers still run when the colors go."""

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:cluster:Cluster", name, None, opts)
        base_tags = tags(args.environment)
        existing = args.config.existing
        if existing is None:
            reach = self._create(name, args, base_tags)
        else:
            assert args.kubeconfig is not None  # config.parse requires it
            reach = _Reach(
                cluster_name=existing.name,
                kubeconfig=args.kubeconfig,
                oidc_provider_arn=existing.oidc_provider_arn,
                issuer_url=existing.oidc_issuer_url,
                node_security_group_id=pulumi.Output.from_input(existing.node_security_group_id),
                access=[],
                nodes=[],
            )
        self.node_security_group_id: pulumi.Output[str] = reach.node_security_group_id
        # For the IRSA roles of the workloads (the colors' pods and migration Jobs).
        self.oidc_provider_arn: pulumi.Output[str] = pulumi.Output.from_input(reach.oidc_provider_arn)
        self.issuer_url: pulumi.Output[str] = pulumi.Output.from_input(reach.issuer_url)
        secret_kubeconfig: pulumi.Output[str] = pulumi.Output.secret(reach.kubeconfig)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=secret_kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=reach.access),
        )
        self.load_balancer_controller: k8s.helm.v3.Release | None = None
        if args.config.load_balancer_controller:
            self.load_balancer_controller = install_load_balancer_controller(
                name,
                parent=self,
                provider=self.provider,
                cluster_name=reach.cluster_name,
                region=args.region,
                vpc_id=args.vpc_id,
                oidc_provider_arn=reach.oidc_provider_arn,
                issuer_url=reach.issuer_url,
                tags=base_tags,
                after=reach.nodes,
            )
        self.workload_dependencies: list[pulumi.Resource] = (
            [self.load_balancer_controller] if self.load_balancer_controller is not None else []
        )
        self.register_outputs({"nodeSecurityGroupId": self.node_security_group_id})

    def _create(self, name: str, args: ClusterArgs, base_tags: dict[str, str]) -> _Reach:
        """The EKS cluster, its access entries, the VPC CNI add-on, the node group and the
        OIDC provider, each after the IAM attachments it needs (and destroyed before them)."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=_assume("eks.amazonaws.com"),
            tags=base_tags,
            opts=child,
        )
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child,
        )
        self.secrets_key, key_use = secrets_key(name, args.name, role, base_tags, parent=self)
        # Before the cluster: EKS creates a missing control-plane log group itself, without a
        # retention, and this one would then fail with ResourceAlreadyExistsException. (A
        # cluster created before this group was declared: `pulumi import
        # aws:cloudwatch/logGroup:LogGroup <env>-cluster-control-plane-logs /aws/eks/<cluster>/cluster`.)
        self.control_plane_logs = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs",
            name=control_plane_log_group(args.name),
            retention_in_days=args.config.log_retention_days,
            tags=base_tags,
            opts=child,
        )
        self.eks = aws.eks.Cluster(
            f"{name}-eks",
            name=args.name,
            role_arn=role.arn,
            version=args.config.version,
            # STANDARD: at the end of standard support EKS upgrades the cluster instead of
            # billing extended support. Set explicitly: the API's default is EXTENDED.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=args.config.support_type),
            # Access entries only (no aws-auth ConfigMap). The creator gets no implicit admin
            # entry: every role is in cutover:cluster.access, so whoever ran the first `up`
            # keeps no hidden access, and listing it does not collide with a bootstrap entry.
            # (This flag forces a new cluster when it changes: it never does.)
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False
            ),
            # Private access always (the nodes, anything in the VPC); public access only to
            # cutover:cluster.publicAccessCidrs (CI, admins), or none: then `pulumi up` and
            # kubectl must run from inside the VPC (config.py requires one or the other).
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=[*args.private_subnet_ids, *args.public_subnet_ids],
                endpoint_private_access=True,
                endpoint_public_access=args.config.endpoint_public_access,
                public_access_cidrs=list(args.config.public_access_cidrs) or None,
            ),
            # Kubernetes Secrets envelope-encrypted with this cluster's own KMS key.
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=self.secrets_key.arn),
            ),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            tags=base_tags,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[cluster_policy, key_use, self.control_plane_logs]
            ),
        )
        access = grant_access(name, self.eks.name, args.config.access, base_tags, parent=self)
        # Managed VPC CNI with NetworkPolicy enforcement, before the nodes so that every pod
        # starts under it. OVERWRITE on create takes over the self-managed aws-node EKS
        # installs with a new cluster; on update it keeps this program the owner of the
        # add-on's settings (PRESERVE would keep a hand edit that turned enforcement off).
        self.vpc_cni = aws.eks.Addon(
            f"{name}-vpc-cni",
            cluster_name=self.eks.name,
            addon_name="vpc-cni",
            configuration_values=json.dumps(VPC_CNI_CONFIGURATION),
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=base_tags,
            opts=child,
        )
        node_role = aws.iam.Role(
            f"{name}-node-role", assume_role_policy=_assume("ec2.amazonaws.com"), tags=base_tags, opts=child
        )
        node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-policy-{index}",
                role=node_role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=child,
            )
            for index, policy in enumerate(NODE_POLICIES)
        ]
        self.node_group = aws.eks.NodeGroup(
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*node_policies, self.vpc_cni]),
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
        kubeconfig: pulumi.Output[str] = pulumi.Output.all(
            self.eks.name, self.eks.endpoint, self.eks.certificate_authority.data
        ).apply(lambda v: kubeconfig_for(v[0], v[1], v[2], args.region))
        return _Reach(
            cluster_name=self.eks.name,
            kubeconfig=kubeconfig,
            oidc_provider_arn=oidc.arn,
            issuer_url=issuer,
            node_security_group_id=self.eks.vpc_config.cluster_security_group_id,
            access=access,
            nodes=[self.node_group],
        )
