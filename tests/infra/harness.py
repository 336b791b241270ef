"""Run the Pulumi program under `pulumi.runtime.set_mocks`, recording every resource.

The engine and the cloud cannot run here; the mocks answer registrations with the inputs
plus the few computed outputs the program reads (ARNs, DNS names, the EKS issuer, ...),
and every registered resource is run through the policy pack's rules.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "policy"))

import rules as rules  # noqa: E402  (infra/policy/rules.py, re-exported for the tests)

PLACEHOLDER_KUBECONFIG = json.dumps(
    {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
)


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    parent_type: str | None = None
    protect: bool = False
    ignore_changes: tuple[str, ...] = ()
    depends_on: frozenset[str] = frozenset()  # the depends_on option, by resource name
    urn: str = ""  # as the engine would name it (parent type chain included)
    alias_urns: tuple[str, ...] = ()  # its aliases' URNs, those inherited from its parents included


@dataclass
class Run:
    registered: list[Registered] = field(default_factory=list)  # as the program declared them
    inputs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # as the engine received them
    outputs: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # the data sources (invokes) the program read

    @property
    def resources(self) -> list[Registered]:
        """Every resource, with its resolved inputs (components keep their declared args)."""
        return [
            Registered(
                r.type,
                r.name,
                self.inputs.get((r.type, r.name), r.inputs),
                r.parent_type,
                r.protect,
                r.ignore_changes,
                r.depends_on,
                r.urn,
                r.alias_urns,
            )
            for r in self.registered
        ]

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> Registered:
        found = self.of_type(type_)
        assert len(found) == 1, f"{len(found)} {type_}"
        return found[0]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


def ledger_values(run: Run, color: str) -> dict[str, Any]:
    """The Helm values of `color`'s ledger release, as the program declared them."""
    return service_values(run, "ledger", color)


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    arn = f"arn:aws:mock:eu-west-1:123456789012:{name}"
    if typ == "aws:eks/cluster:Cluster":
        return {
            "arn": arn,
            "endpoint": f"https://{name}.eks.example",
            "certificateAuthority": {"data": "Q0E="},
            "identities": [
                {"oidcs": [{"issuer": f"https://oidc.eks.eu-west-1.amazonaws.com/id/{name.upper()}"}]}
            ],
            "vpcConfig": {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": "sg-0c1u5732"},
        }
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        return {
            "arn": f"arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/{inputs.get('name', name)}/50dc6c495c0c9188",
            "dnsName": f"{inputs.get('name', name)}.eu-west-1.elb.amazonaws.com",
            "zoneId": "Z32O12XQLNTSW2",
        }
    if typ in ("aws:lb/listener:Listener", "aws:lb/listenerRule:ListenerRule"):
        return {
            "arn": f"arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/{name}/50dc6c495c0c9188"
        }
    if typ == "aws:lb/targetGroup:TargetGroup":
        return {
            "arn": f"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/{inputs.get('name', name)}/0123456789abcdef"
        }
    if typ == "aws:rds/instance:Instance":
        return {
            "arn": f"arn:aws:rds:eu-west-1:123456789012:db:{inputs.get('identifier', name)}",
            "address": f"{name}.abc.eu-west-1.rds.amazonaws.com",
            "port": 5432,
            "resourceId": "db-ABCDEFGHIJKLMNOPQRSTUVWXY1",
            "masterUserSecrets": [
                {"secretArn": f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!{name}"}
            ],
        }
    if typ == "aws:acm/certificate:Certificate":
        domains = [inputs["domainName"], *inputs.get("subjectAlternativeNames", [])]
        return {
            "arn": arn,
            "domainValidationOptions": [
                {
                    "domainName": d,
                    "resourceRecordName": f"_x.{d}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_y.acm-validations.aws.",
                }
                for d in domains
            ],
        }
    if typ == "aws:acm/certificateValidation:CertificateValidation":
        return {"certificateArn": inputs["certificateArn"]}
    if typ == "aws:route53/record:Record":
        return {"fqdn": inputs.get("name", name)}
    if typ in (
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
    ):
        return {"arn": arn, "name": inputs.get("name", name)}
    if typ in (
        "aws:dynamodb/table:Table",
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:rds/parameterGroup:ParameterGroup",
    ):
        return {"arn": arn, "name": inputs.get("name", name)}
    if typ == "aws:ecr/repository:Repository":
        return {
            "arn": arn,
            "registryId": "123456789012",
            "repositoryUrl": f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{inputs.get('name', name)}",
        }
    if typ == "aws:s3/bucket:Bucket":  # named by the provider from bucketPrefix (+ a unique suffix)
        bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name + '-')}20260101000000000000000001"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
    if typ == "kubernetes:helm.sh/v3:Release":
        return {"name": inputs.get("name", name), "status": {"status": "deployed"}}
    if typ == "aws:kms/key:Key":
        key_id = f"mock-{name}"
        return {"arn": f"arn:aws:kms:eu-west-1:123456789012:key/{key_id}", "keyId": key_id}
    if typ == "aws:cloudwatch/logGroup:LogGroup":
        group = inputs.get("name", name)
        return {"arn": f"arn:aws:logs:eu-west-1:123456789012:log-group:{group}", "name": group}
    if typ in ("aws:ec2/flowLog:FlowLog", "aws:kms/alias:Alias", "aws:iam/rolePolicy:RolePolicy"):
        return {"arn": arn}
    return {}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, run: Run) -> None:
        self.run = run

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = {**args.inputs, **_computed(args.typ, args.name, args.inputs)}
        self.run.inputs[(args.typ, args.name)] = dict(args.inputs)
        self.run.violations += [
            f"{args.typ} {args.name}: {v}"
            for v in rules.violations(args.typ, args.inputs, skip=rules.PENDING_IN_PROGRAM)
        ]
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.run.calls.append(args.token)
        if args.token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
            return {
                "secretString": json.dumps({"username": "ledger", "password": "s3cr3t/+="}),
                "arn": args.args["secretId"],
            }, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": "123456789012",
                "arn": "arn:aws:iam::123456789012:role/ci",
                "userId": "AROAEXAMPLE",
                "id": "123456789012",
            }, []
        if args.token == "aws:elb/getServiceAccount:getServiceAccount":
            account = ELB_ACCOUNTS[args.args.get("region") or "eu-west-1"]  # KeyError: a newer region
            return {"arn": f"arn:aws:iam::{account}:root", "id": account}, []
        return {}, []


# Elastic Load Balancing's log delivery accounts of the regions the tests use (AWS docs).
ELB_ACCOUNTS = {"eu-west-1": "156460612806", "us-east-1": "127311923021"}


def stack_config(stack: str) -> tuple[dict[str, str], list[str]]:
    """Pulumi.<stack>.yaml as the flat config the engine would pass (objects as JSON);
    `secure:` values become a placeholder and are marked secret."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, str] = {}
    secret_keys = []
    for key, value in document["config"].items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = PLACEHOLDER_KUBECONFIG
            secret_keys.append(key)
        elif isinstance(value, dict | list):
            config[key] = json.dumps(value)
        elif isinstance(value, bool):
            config[key] = "true" if value else "false"
        else:
            config[key] = str(value)
    return config, secret_keys


def parsed(stack: str, **changes: Any) -> Any:
    """Pulumi.<stack>.yaml parsed into its StackConfig (a change of None removes the key)."""
    from cutover_infra.config import parse

    config, secrets = stack_config(stack)
    raw: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith("cutover:"):
            try:
                raw[key.removeprefix("cutover:")] = json.loads(value)
            except json.JSONDecodeError:
                raw[key.removeprefix("cutover:")] = value
    raw.update(changes)
    return parse(
        {k: v for k, v in raw.items() if v is not None},
        stack=stack,
        region="eu-west-1",
        is_secret=lambda key: f"cutover:{key}" in secrets,
    )


def services_with(stack: str, service: str, **fields: Any) -> dict[str, Any]:
    """The stack's `cutover:services` with `service`'s entry changed (a field None: removed)."""
    services: dict[str, Any] = json.loads(stack_config(stack)[0]["cutover:services"])
    entry = {**services[service], **fields}
    services[service] = {k: v for k, v in entry.items() if v is not None}
    return services


def section_with(stack: str, section: str, **fields: Any) -> dict[str, Any]:
    """The stack's `cutover:<section>` object with `fields` changed."""
    found: dict[str, Any] = json.loads(stack_config(stack)[0].get(f"cutover:{section}", "{}"))
    return {**found, **fields}


def service_values(run: Run, service: str, color: str) -> dict[str, Any]:
    """The Helm values of `color`'s release of `service`, as the program declared them."""
    (release,) = [
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs.get("name") == f"{service}-{color}"
    ]
    values: dict[str, Any] = release.inputs["values"]
    return values


def dependency_names(opts: pulumi.ResourceOptions | None) -> frozenset[str]:
    """The names of the resources a resource's depends_on option lists (the program lists
    resources, never outputs)."""
    wanted = opts.depends_on if opts else None
    listed = [wanted] if isinstance(wanted, pulumi.Resource) else list(wanted or [])  # type: ignore[arg-type]
    assert all(isinstance(r, pulumi.Resource) for r in listed), listed
    return frozenset(r.pulumi_resource_name for r in listed)


def run_program(
    stack: str,
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    run: Run | None = None,
    mocks: type[RecordingMocks] | None = None,
) -> Run:
    """The whole program for `stack` under mocks (config from Pulumi.<stack>.yaml unless given)."""
    if config is None:
        config, secret_keys = stack_config(stack)
    run = run if run is not None else Run()
    # Pulumi's runtime uses the thread's current event loop; earlier tests' asyncio.run()
    # leave none behind, so give each program run a fresh one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks((mocks or RecordingMocks)(run), project="cutover", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, secret_keys or [])

    active = [True]  # the SDK keeps stack transformations across runs: only record this one
    chains: dict[int, str] = {}  # id(resource) -> its type chain (`parent$...$type`)
    alias_chains: dict[int, list[str]] = {}  # id(resource) -> the type chains of its aliases

    def urn(chain: str, name: str) -> str:
        return f"urn:pulumi:{stack}::cutover::{chain}::{name}"

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        if not active[0]:
            return None
        parent = args.opts.parent if args.opts else None
        if parent is not None and getattr(parent, "_type", None) == "pulumi:pulumi:Stack":
            parent = None
        parent_chain = chains.get(id(parent)) if parent is not None else None
        chain = f"{parent_chain}${args.type_}" if parent_chain else args.type_
        chains[id(args.resource)] = chain
        aliases, own = [], []
        for alias in (args.opts.aliases or []) if args.opts else []:
            if isinstance(alias, str):
                aliases.append(alias)
                continue
            assert isinstance(alias, pulumi.Alias), alias  # the program gives Alias objects, never outputs
            unset: Any = ...  # the SDK's sentinel for a field the alias leaves as it is
            name = args.name if alias.name is unset else str(alias.name)
            if alias.parent is unset:
                before = parent_chain
            elif alias.parent is None:
                before = None
            else:
                before = chains.get(id(alias.parent))
            alias_chain = f"{before}${args.type_}" if before else args.type_
            aliases.append(urn(alias_chain, name))
            if name == args.name:
                own.append(alias_chain)
        for inherited in alias_chains.get(id(parent), []) if parent is not None else []:
            # the engine gives a child an alias under each of its parent's aliases
            aliases.append(urn(f"{inherited}${args.type_}", args.name))
            own.append(f"{inherited}${args.type_}")
        alias_chains[id(args.resource)] = own
        run.registered.append(
            Registered(
                args.type_,
                args.name,
                {},
                parent_type=getattr(parent, "_type", None) if parent is not None else None,
                protect=bool(args.opts and args.opts.protect),
                ignore_changes=tuple(args.opts.ignore_changes or ()) if args.opts else (),
                depends_on=dependency_names(args.opts),
                urn=urn(chain, args.name),
                alias_urns=tuple(aliases),
            )
        )
        return None

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        from cutover_infra import config as stack_settings
        from cutover_infra.program import build

        pulumi.runtime.register_stack_transformation(record)
        settings = stack_settings.load()
        kubeconfig = pulumi.Config("cutover").get_secret("kubeconfig") if settings.cluster.existing else None
        outputs = build(settings, kubeconfig)
        return pulumi.Output.all(**outputs).apply(run.outputs.update)

    try:
        program()
    finally:
        active[0] = False
        asyncio.set_event_loop(None)
        loop.close()
    run.violations += rules.stack_violations(stack_resources(run), skip=rules.PENDING_IN_PROGRAM)
    return run


def stack_resources(run: Run) -> list[rules.StackResource]:
    """The recorded resources as the policy pack's stack rules see them (IDs as the mocks give them)."""
    return [rules.StackResource(r.type, r.name, {**r.inputs, "id": f"{r.name}-id"}) for r in run.resources]
