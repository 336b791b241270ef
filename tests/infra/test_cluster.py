"""The cluster under mocks: access entries (API authentication), the version and its upgrade
policy, the VPC CNI add-on, the order of creation and destruction (depends_on), the
TargetGroupBinding declared before the pods, and the Load Balancer Controller opt-in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from cutover_infra.components.access import access_policy_arn, grants
from cutover_infra.components.app import chart_fullname, without_chart_binding
from cutover_infra.config import ClusterAccess, ClusterConfig, ConfigError, parse

from tests.charts.helpers import BASE_VALUES, TARGET_GROUP, by_kind, merged, render
from tests.infra.harness import ROOT, Run, run_program, stack_config

ADMIN = "arn:aws:iam::123456789012:role/prod-platform-admin"
RELEASE = "arn:aws:iam::123456789012:role/cutover-prod-ci-release"
PREVIEW = "arn:aws:iam::123456789012:role/cutover-prod-ci-preview"
POLICY = "arn:aws:eks::aws:cluster-access-policy/"
LBC_CHART = "aws-load-balancer-controller"


@dataclass
class Graph:
    """A program run plus each resource's explicit depends_on (by resource name)."""

    run: Run

    @property
    def depends_on(self) -> dict[str, set[str]]:
        return {r.name: set(r.depends_on) for r in self.run.registered}

    def named(self, name: str) -> Any:
        (found,) = [r for r in self.run.resources if r.name == name]
        return found


def run_with_dependencies(
    stack: str, config: dict[str, str] | None = None, secrets: list[str] | None = None
) -> Graph:
    """run_program, with each resource's depends_on at hand."""
    return Graph(run_program(stack, config, secrets))


def raw_config(stack: str, **cluster: object) -> dict[str, Any]:
    """Pulumi.<stack>.yaml's `cutover:` keys as parse() takes them, cluster keys changed
    (None removes one)."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    raw = {k.removeprefix("cutover:"): v for k, v in document.items() if k.startswith("cutover:")}
    section = {**raw.get("cluster", {}), **cluster}
    raw["cluster"] = {k: v for k, v in section.items() if v is not None}
    return raw


def parsed(stack: str, **cluster: object) -> ClusterConfig:
    return parse(
        raw_config(stack, **cluster), stack=stack, region="eu-west-1", is_secret=lambda _k: True
    ).cluster


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_with_dependencies("prod")


@pytest.fixture(scope="module")
def dev() -> Graph:
    return run_with_dependencies("dev")


def _lbc_releases(run: Run) -> list[Any]:
    return [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs.get("chart") == LBC_CHART]


# --------------------------------------------------------------------------- 4. access


def test_a_created_cluster_admits_the_configured_roles_through_access_entries_only(prod: Graph) -> None:
    eks = prod.run.one("aws:eks/cluster:Cluster")
    assert eks.inputs["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    entries = prod.run.of_type("aws:eks/accessEntry:AccessEntry")
    assert {e.inputs["principalArn"] for e in entries} == {ADMIN, RELEASE, PREVIEW}
    assert all(
        e.inputs["type"] == "STANDARD" and e.inputs["clusterName"] == "cutover-prod-eks" for e in entries
    )
    associations = prod.run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert {a.inputs["principalArn"]: a.inputs["policyArn"] for a in associations} == {
        ADMIN: POLICY + "AmazonEKSClusterAdminPolicy",
        RELEASE: POLICY + "AmazonEKSClusterAdminPolicy",  # it installs cluster-scoped objects
        PREVIEW: POLICY + "AmazonEKSViewPolicy",
    }
    assert all(a.inputs["accessScope"] == {"type": "cluster"} for a in associations)


def test_grants_are_named_by_role_and_keep_the_partition() -> None:
    found = grants(
        ClusterAccess(
            admins=("arn:aws-cn:iam::123456789012:role/ops/Admin",),
            preview=("arn:aws:iam::210987654321:role/ci-preview",),
        )
    )
    assert [(g.key[:-9], g.policy_arn) for g in found] == [
        (
            "123456789012-ops-Admin",
            "arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
        ),
        ("210987654321-ci-preview", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"),
    ]
    assert access_policy_arn("arn:aws-us-gov:iam::123456789012:role/x", "P").startswith(
        "arn:aws-us-gov:eks::"
    )


def test_an_existing_cluster_gets_no_access_entries(dev: Graph) -> None:
    assert not dev.run.of_type("aws:eks/accessEntry:AccessEntry")
    assert not dev.run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")


BAD_ACCESS = [
    (
        "a user, not a role",
        {"access": {"admins": ["arn:aws:iam::123456789012:user/alice"]}},
        "access.admins[0]",
    ),
    ("short account", {"access": {"release": ["arn:aws:iam::12345:role/ci"]}}, "access.release[0]"),
    (
        "an assumed-role session",
        {"access": {"admins": [ADMIN], "preview": ["arn:aws:sts::123456789012:assumed-role/ci/s"]}},
        "access.preview[0]",
    ),
    ("a role twice", {"access": {"admins": [ADMIN], "release": [ADMIN]}}, "access.release[0]"),
    ("unknown level", {"access": {"admins": [ADMIN], "owners": [ADMIN]}}, "access.owners"),
    ("no access at all", {"access": None}, "cluster.access"),
    ("preview only", {"access": {"preview": [PREVIEW]}}, "cluster.access"),
    ("not a list", {"access": {"admins": ADMIN}}, "access.admins"),
]


@pytest.mark.parametrize(("what", "cluster", "key"), BAD_ACCESS, ids=[b[0] for b in BAD_ACCESS])
def test_bad_access_config_names_the_key_and_the_fix(what: str, cluster: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parsed("prod", **cluster)
    message = str(error.value)
    assert f"cutover:cluster.{key.removeprefix('cluster.')}" in message and "; fix: " in message, message
    assert "\n" not in message


def test_access_on_an_existing_cluster_is_refused_before_anything_is_declared() -> None:
    config, secrets = stack_config("dev")
    cluster = json.loads(config["cutover:cluster"])
    config["cutover:cluster"] = json.dumps({**cluster, "access": {"admins": [ADMIN]}})
    run = Run()
    with pytest.raises(
        Exception, match=r"cutover:cluster.access applies only to a cluster this stack creates"
    ):
        run_program("dev", config, secrets, run=run)
    assert run.registered == []


# --------------------------------------------------------------------------- 5. version


def test_the_version_defaults_to_standard_support_with_an_explicit_upgrade_policy(prod: Graph) -> None:
    default = parsed("prod", version=None, supportType=None)
    assert (default.version, default.support_type) == ("1.36", "STANDARD")
    eks = prod.run.one("aws:eks/cluster:Cluster")
    assert eks.inputs["version"] == "1.36"
    assert eks.inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    assert parsed("prod", supportType="EXTENDED").support_type == "EXTENDED"


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        (1.3, "is the number 1.3, not a string (YAML reads an unquoted 1.30 as 1.3); fix: quote it"),
        (1.36, "is the number 1.36, not a string"),
        (1, "is the number 1, not a string"),
        ("1.3", "must be a Kubernetes minor version"),
        ("v1.36", "must be a Kubernetes minor version"),
        ("1.36.2", "must be a Kubernetes minor version"),
    ],
)
def test_the_version_must_be_a_quoted_minor_version(version: object, problem: str) -> None:
    with pytest.raises(
        ConfigError, match=r"^cutover:cluster\.version " + problem.replace("(", r"\(").replace(")", r"\)")
    ):
        parsed("prod", version=version)


def test_an_unquoted_version_in_the_stack_file_fails_before_anything_is_declared() -> None:
    config, secrets = stack_config("prod")
    config["cutover:cluster"] = config["cutover:cluster"].replace('"version": "1.36"', '"version": 1.3')
    run = Run()
    with pytest.raises(Exception, match=r'cutover:cluster.version is the number 1.3.*version: "1.36"'):
        run_program("prod", config, secrets, run=run)
    assert run.registered == []


def test_an_unknown_support_type_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^cutover:cluster.supportType must be STANDARD or EXTENDED"):
        parsed("prod", supportType="LTS")


# --------------------------------------------------------------------------- 6. ordering


def test_cluster_and_nodes_wait_for_their_iam_attachments(prod: Graph) -> None:
    assert prod.depends_on["prod-cluster-eks"] == {
        "prod-cluster-cluster-policy",
        "prod-cluster-secrets-key-use",  # EKS uses the KMS key through the cluster role
        "prod-cluster-control-plane-logs",  # else EKS creates the log group, without retention
    }
    assert (
        prod.named("prod-cluster-cluster-policy").type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    )
    nodes = prod.depends_on["prod-cluster-nodes"]
    attachments = {f"prod-cluster-node-policy-{i}" for i in range(3)}
    assert attachments <= nodes and "prod-cluster-vpc-cni" in nodes
    policies = {prod.named(a).inputs["policyArn"].rsplit("/", 1)[1] for a in attachments}
    assert policies == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryReadOnly",
    }


def test_the_load_balancer_controller_waits_for_the_nodes_with_a_bounded_atomic_install(prod: Graph) -> None:
    (lbc,) = _lbc_releases(prod.run)
    assert {"prod-cluster-nodes", "prod-cluster-lbc-attach"} <= prod.depends_on[lbc.name]
    assert lbc.inputs["atomic"] is True and lbc.inputs["timeout"] == 600
    assert not lbc.inputs.get("skipAwait")


def test_nothing_talks_to_the_cluster_before_the_access_entries_exist(prod: Graph) -> None:
    associations = {
        a.name for a in prod.run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    }
    assert len(associations) == 3 and prod.depends_on["prod-cluster-k8s"] == associations
    for association in associations:  # each after its access entry
        assert prod.depends_on[association] == {association.rsplit("-", 1)[0]}


@pytest.mark.parametrize("color", ["blue", "green"])
def test_the_binding_exists_before_the_pods_and_goes_after_them(prod: Graph, color: str) -> None:
    app, binding, release = f"prod-{color}-app", f"prod-{color}-app-tgb", f"prod-{color}-app-release"
    assert prod.depends_on[app] == {"prod-cluster-lbc"}  # destroyed before the controller
    assert prod.depends_on[binding] == {f"prod-{color}-app-ns", "prod-cluster-lbc"}  # its CRD and webhook
    assert binding in prod.depends_on[release]  # the pods come after it: readiness gates injected
    assert prod.named(binding).type == "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding"


def test_the_binding_is_the_one_the_chart_would_render_and_the_chart_renders_none(prod: Graph) -> None:
    for color in ("blue", "green"):
        binding = prod.named(f"prod-{color}-app-tgb").inputs
        release = prod.named(f"prod-{color}-app-release").inputs
        values = release["values"]
        assert values["aws"]["targetGroupBinding"] == {"create": False}
        objects = render(values, name=release["name"], namespace=release["namespace"])
        assert not by_kind(objects, "TargetGroupBinding")
        # The same values with the chart's binding on: the chart's own would be the same object.
        (chart_binding,) = by_kind(
            render(
                {**values, "aws": {**values["aws"], "targetGroupBinding": {"create": True}}},
                name=release["name"],
                namespace=release["namespace"],
            ),
            "TargetGroupBinding",
        )
        assert (binding["apiVersion"], binding["kind"]) == (
            chart_binding["apiVersion"],
            chart_binding["kind"],
        )
        assert binding["metadata"]["name"] == chart_binding["metadata"]["name"] == f"ledger-{color}"
        assert binding["metadata"]["namespace"] == f"ledger-{color}"
        assert binding["spec"] == chart_binding["spec"]
        (service,) = [
            s
            for s in by_kind(objects, "Service")
            if s["metadata"]["name"] == binding["spec"]["serviceRef"]["name"]
        ]
        assert binding["spec"]["serviceRef"]["port"] in [p["port"] for p in service["spec"]["ports"]]


def test_the_chart_alone_still_renders_its_binding() -> None:
    values = merged(BASE_VALUES, {"aws": {"targetGroupArn": TARGET_GROUP}})
    assert len(by_kind(render(values), "TargetGroupBinding")) == 1
    assert not by_kind(render(without_chart_binding(values)), "TargetGroupBinding")


@pytest.mark.parametrize(
    ("release", "name", "fullname"),
    [
        ("ledger-blue", "ledger", "ledger-blue"),
        ("greeter-green", "greeter", "greeter-green"),
        ("payments", "ledger", "payments-ledger"),
        ("x" * 70, "ledger", "x" * 63),
    ],
)
def test_chart_fullname_follows_the_chart(release: str, name: str, fullname: str) -> None:
    assert chart_fullname(release, name) == fullname
    values = merged(BASE_VALUES, {"aws": {"targetGroupArn": TARGET_GROUP}, "nameOverride": name})
    objects = render(values, name=release)
    (binding,) = by_kind(objects, "TargetGroupBinding")
    assert binding["spec"]["serviceRef"]["name"] == fullname


# --------------------------------------------------------------------------- 7. VPC CNI


def test_a_created_cluster_enforces_network_policies_through_the_vpc_cni_add_on(prod: Graph) -> None:
    addon = prod.run.one("aws:eks/addon:Addon")
    assert addon.inputs["addonName"] == "vpc-cni" and addon.inputs["clusterName"] == "cutover-prod-eks"
    assert json.loads(addon.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert addon.inputs["resolveConflictsOnCreate"] == addon.inputs["resolveConflictsOnUpdate"] == "OVERWRITE"


def test_an_existing_clusters_cni_is_left_to_its_owner(dev: Graph) -> None:
    assert not dev.run.of_type("aws:eks/addon:Addon")


# --------------------------------------------------------------------------- 8. LBC opt-in


def test_an_existing_cluster_gets_no_second_load_balancer_controller(dev: Graph) -> None:
    assert parsed("dev", loadBalancerController=None).load_balancer_controller is False  # the default
    assert not _lbc_releases(dev.run)
    assert not [r for r in dev.run.resources if "-lbc" in r.name]  # no role, policy, attachment
    for color in ("blue", "green"):
        assert dev.depends_on[f"dev-{color}-app"] == set()
        assert dev.depends_on[f"dev-{color}-app-tgb"] == {f"dev-{color}-app-ns"}
        assert f"dev-{color}-app-tgb" in dev.depends_on[f"dev-{color}-app-release"]
    assert dev.run.violations == []


def test_an_existing_cluster_can_opt_in_to_the_controller() -> None:
    config, secrets = stack_config("dev")
    cluster = json.loads(config["cutover:cluster"])
    config["cutover:cluster"] = json.dumps({**cluster, "loadBalancerController": True})
    graph = run_with_dependencies("dev", config, secrets)
    (lbc,) = _lbc_releases(graph.run)
    assert graph.depends_on[lbc.name] == {"dev-cluster-lbc-attach"}  # no node group of ours to wait for
    assert lbc.inputs["values"]["clusterName"] == "dev-shared"
    assert graph.depends_on["dev-blue-app"] == {lbc.name}


def test_a_created_cluster_cannot_go_without_the_controller() -> None:
    assert parsed("prod", loadBalancerController=None).load_balancer_controller is True
    with pytest.raises(ConfigError, match=r"^cutover:cluster.loadBalancerController cannot be false when"):
        parsed("prod", loadBalancerController=False)
