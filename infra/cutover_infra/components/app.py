"""One color of ledger in Kubernetes: its namespace (pod readiness gates on), the database
Secret, its TargetGroupBinding (declared here, before the pods) and charts/ledger installed
with the values `chart_values` computes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cutover_infra.budget import DrainBudget
from cutover_infra.values import CHART_PATH, chart_values, namespace

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
DATABASE_SECRET = "ledger-database"  # noqa: S105 (the Secret's name, not a secret)
CHART_NAME = "ledger"  # charts/ledger/Chart.yaml
SERVICE_PORT = 80  # the chart's default service.port (the values leave it)


def chart_fullname(release: str, chart: str = CHART_NAME) -> str:
    """The chart's `ledger.fullname` (no overrides): its Service's and TargetGroupBinding's name."""
    name = release if chart in release else f"{release}-{chart}"
    return name[:63].removesuffix("-")


def target_group_binding_spec(service: str, port: int, target_group_arn: str) -> dict[str, Any]:
    """The spec charts/ledger/templates/targetgroupbinding.yaml renders (ip targets)."""
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
class AppArgs:
    color: str
    image_repository: str
    image_tag: str
    replicas: int
    database_url: pulumi.Output[str]
    target_group_arn: pulumi.Input[str]
    budget: DrainBudget
    vpc_cidr: str
    provider: k8s.Provider


class App(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:app:App", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        ns = namespace(args.color)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ns,
                labels={
                    # Pods count as ready only once their ALB target is healthy.
                    "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
                    "app.kubernetes.io/part-of": "cutover",
                    "color": args.color,
                },
            ),
            opts=k8s_opts,
        )
        secret = k8s.core.v1.Secret(
            f"{name}-database",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=DATABASE_SECRET, namespace=ns),
            string_data={"DATABASE_URL": args.database_url},
            type="Opaque",
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[self.namespace]),
        )
        values = pulumi.Output.from_input(args.target_group_arn).apply(
            lambda arn: chart_values(
                color=args.color,
                image_repository=args.image_repository,
                image_tag=args.image_tag,
                replicas=args.replicas,
                database_secret=DATABASE_SECRET,
                target_group_arn=arn,
                budget=args.budget,
                vpc_cidr=args.vpc_cidr,
            )
        )
        # The binding first: after the namespace and the Load Balancer Controller (its CRD and
        # webhook), before the release (its pods get the readiness gate); destroyed after the
        # release and before the controller, whose finalizer deregisters the targets.
        release_name = f"ledger-{args.color}"
        self.target_group_binding = k8s.apiextensions.CustomResource(
            f"{name}-tgb",
            api_version="elbv2.k8s.aws/v1beta1",
            kind="TargetGroupBinding",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=chart_fullname(release_name),
                namespace=ns,
                labels={"app.kubernetes.io/part-of": "cutover", "color": args.color},
            ),
            spec=pulumi.Output.from_input(args.target_group_arn).apply(
                lambda arn: target_group_binding_spec(chart_fullname(release_name), SERVICE_PORT, arn)
            ),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[self.namespace, *_waits_for(opts)]
            ),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=release_name,
                chart=str(REPOSITORY_ROOT / CHART_PATH),
                namespace=ns,
                values=values.apply(without_chart_binding),
                atomic=True,
                wait_for_jobs=True,
                timeout=900,
            ),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[secret, self.target_group_binding]
            ),
        )
        self.register_outputs({"namespace": ns, "release": self.release.name})
