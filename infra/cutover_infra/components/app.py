"""One color of ledger in Kubernetes: its namespace (pod readiness gates on), the database
Secret, and charts/ledger installed with the values `chart_values` computes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from cutover_infra.budget import DrainBudget
from cutover_infra.values import CHART_PATH, chart_values, namespace

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
DATABASE_SECRET = "ledger-database"  # noqa: S105 (the Secret's name, not a secret)


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
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=f"ledger-{args.color}",
                chart=str(REPOSITORY_ROOT / CHART_PATH),
                namespace=ns,
                values=values,
                atomic=True,
                wait_for_jobs=True,
                timeout=900,
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[secret]),
        )
        self.register_outputs({"namespace": ns, "release": self.release.name})
