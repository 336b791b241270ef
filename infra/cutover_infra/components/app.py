"""One color of a service in Kubernetes: its namespace (pod readiness gates on), the IAM
roles its pods and its migration Job log in to Postgres with when it uses the stack's
database (IRSA: no password in Kubernetes or in Pulumi's state), its TargetGroupBinding
(declared here, before the pods) and the service chart installed with the values
`chart_values` computes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from cutover_infra.budget import DrainBudget
from cutover_infra.components.load_balancer_controller import irsa_trust_policy
from cutover_infra.config import ServiceConfig
from cutover_infra.values import (
    DatabaseLogin,
    chart_values,
    database_connect_policy,
    database_user_arn,
    master_secret_read_policy,
    migration_service_account,
    namespace,
    release_name,
    tags,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SERVICE_PORT = 80  # the chart's default service.port (the values leave it)


def chart_fullname(release: str, name: str) -> str:
    """The chart's fullname helper with nameOverride=`name` (what the program sets: the
    service's name): its Service's and TargetGroupBinding's name."""
    fullname = release if name in release else f"{release}-{name}"
    return fullname[:63].removesuffix("-")


def target_group_binding_spec(service: str, port: int, target_group_arn: str) -> dict[str, Any]:
    """The spec the chart's templates/targetgroupbinding.yaml renders (ip targets)."""
    return {
        "targetGroupARN": target_group_arn,
        "targetType": "ip",
        "serviceRef": {"name": service, "port": port},
    }


def without_chart_binding(values: dict[str, Any]) -> dict[str, Any]:
    """The chart's values with its own TargetGroupBinding off: the App declares it, so that
    it exists before the chart's first pods (the controller injects readiness gates only
    into pods created after the binding; Helm applies custom resources after Deployments)."""
    return {**values, "aws": {**values.get("aws", {}), "targetGroupBinding": {"create": False}}}


def _waits_for(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """The resources the component was told to wait for (children do not inherit them)."""
    wanted = opts.depends_on if opts is not None else None
    if isinstance(wanted, pulumi.Resource):
        return [wanted]
    if isinstance(wanted, Sequence):
        return [r for r in wanted if isinstance(r, pulumi.Resource)]
    return []


@dataclass
class AppDatabase:
    """The stack's database as the color's logins need it (outputs of the Database component)."""

    address: pulumi.Input[str]
    port: pulumi.Input[int]
    name: str
    instance_arn: pulumi.Input[str]
    resource_id: pulumi.Input[str]
    master_secret_arn: pulumi.Input[str]
    cidr: str


@dataclass
class AppArgs:
    environment: str
    service: ServiceConfig
    chart: str  # the chart's directory, relative to the repository (or absolute)
    color: str
    region: str
    image_repository: str
    image_tag: str
    replicas: int
    database: AppDatabase | None  # the stack's database, for a service in `provisioned` mode
    target_group_arn: pulumi.Input[str]
    budget: DrainBudget
    vpc_cidr: str
    provider: k8s.Provider
    oidc_provider_arn: pulumi.Input[str]
    issuer_url: pulumi.Input[str]
    idle_timeout_seconds: int | None = None
    keep_alive_seconds: int | None = None


class App(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:app:App", name, None, opts)
        self._policies: list[aws.iam.RolePolicy] = []
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        service = args.service.name
        ns = namespace(service, args.color)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ns,
                labels={
                    # Pods count as ready only once their ALB target is healthy.
                    "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
                    "app.kubernetes.io/part-of": "cutover",
                    "app.kubernetes.io/name": service,
                    "color": args.color,
                },
            ),
            opts=k8s_opts,
        )
        release = release_name(service, args.color)
        fullname = chart_fullname(release, service)
        base_tags = tags(args.environment, service=service, color=args.color)
        login: pulumi.Output[DatabaseLogin | None] = pulumi.Output.from_input(None)
        db = args.database
        if db is not None:
            user = args.service.database.user
            app_role = self._role(
                f"{name}-db-login",
                args,
                ns,
                fullname,
                pulumi.Output.all(db.instance_arn, db.resource_id).apply(
                    lambda v: database_connect_policy(database_user_arn(v[0], v[1], user))
                ),
                base_tags,
            )
            migration_role = self._role(
                f"{name}-migrate",
                args,
                ns,
                migration_service_account(fullname),
                pulumi.Output.from_input(db.master_secret_arn).apply(master_secret_read_policy),
                base_tags,
            )
            login = pulumi.Output.all(
                db.address, db.port, db.master_secret_arn, app_role.arn, migration_role.arn
            ).apply(
                lambda v: DatabaseLogin(
                    address=v[0],
                    port=int(v[1]),
                    database=db.name,
                    region=args.region,
                    master_secret_arn=v[2],
                    app_role_arn=v[3],
                    migration_role_arn=v[4],
                    user=user,
                )
            )
        database_cidr = db.cidr if db is not None else ""
        values = pulumi.Output.all(args.target_group_arn, login).apply(
            lambda v: chart_values(
                service=args.service,
                color=args.color,
                image_repository=args.image_repository,
                image_tag=args.image_tag,
                replicas=args.replicas,
                target_group_arn=v[0],
                budget=args.budget,
                vpc_cidr=args.vpc_cidr,
                database_cidr=database_cidr,
                idle_timeout_seconds=args.idle_timeout_seconds,
                keep_alive_seconds=args.keep_alive_seconds,
                database_login=v[1],
            )
        )
        # The binding first: after the namespace and the Load Balancer Controller (its CRD and
        # webhook), before the release (its pods get the readiness gate); destroyed after the
        # release and before the controller, whose finalizer deregisters the targets.
        self.target_group_binding = k8s.apiextensions.CustomResource(
            f"{name}-tgb",
            api_version="elbv2.k8s.aws/v1beta1",
            kind="TargetGroupBinding",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=fullname,
                namespace=ns,
                labels={
                    "app.kubernetes.io/part-of": "cutover",
                    "app.kubernetes.io/name": service,
                    "color": args.color,
                },
            ),
            spec=pulumi.Output.from_input(args.target_group_arn).apply(
                lambda arn: target_group_binding_spec(fullname, SERVICE_PORT, arn)
            ),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[self.namespace, *_waits_for(opts)]
            ),
        )
        chart = Path(args.chart)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=release,
                chart=str(chart if chart.is_absolute() else REPOSITORY_ROOT / chart),
                namespace=ns,
                values=values.apply(without_chart_binding),
                atomic=True,
                wait_for_jobs=True,
                timeout=900,
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                # the roles' policies first: the first pods and the Job log in at once
                depends_on=[self.target_group_binding, *self._policies],
            ),
        )
        self.register_outputs({"namespace": ns, "release": self.release.name})

    def _role(
        self,
        name: str,
        args: AppArgs,
        namespace_name: str,
        service_account: str,
        policy: pulumi.Input[str],
        base_tags: dict[str, str],
    ) -> aws.iam.Role:
        """An IRSA role only `service_account` of this color can assume, with one inline policy."""
        trust = pulumi.Output.all(args.oidc_provider_arn, args.issuer_url).apply(
            lambda v: irsa_trust_policy(v[0], v[1], namespace_name, service_account)
        )
        role = aws.iam.Role(
            name, assume_role_policy=trust, tags=base_tags, opts=pulumi.ResourceOptions(parent=self)
        )
        self._policies.append(
            aws.iam.RolePolicy(
                f"{name}-policy", role=role.id, policy=policy, opts=pulumi.ResourceOptions(parent=self)
            )
        )
        return role
