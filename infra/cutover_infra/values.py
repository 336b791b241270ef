"""Pure functions the components use: names, tags, chart values, the cutover_env output."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutover_infra.budget import DrainBudget
from cutover_infra.config import ServiceConfig

# The ALB listener policy: TLS 1.3 with TLS 1.2 fallback, forward secrecy only (AWS's
# recommended policy for ALBs).
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"


def resource_name(environment: str, *parts: str) -> str:
    """`cutover-<env>-<parts>`, at most 32 characters (the ALB and target group limit); a
    longer name keeps its first 23 characters and 8 hex digits of a hash of the whole, so two
    long names that differ only at the end (blue, green) stay distinct."""
    name = "-".join(("cutover", environment, *parts))
    if len(name) <= 32:
        return name
    return f"{name[:23].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def tags(environment: str, **extra: str) -> dict[str, str]:
    return {"project": "cutover", "environment": environment, "managed-by": "pulumi", **extra}


# Tags every tagged AWS resource of a stack carries (program.py adds them to each): the
# policy pack's production checks key on `tier`, and `teardown` exempts a stack being torn down.
TIER_TAG = "tier"
TEARDOWN_TAG = "teardown"


def with_stack_tags(resource_tags: Mapping[str, Any], *, tier: str, teardown: bool) -> dict[str, Any]:
    """`resource_tags` with the stack's `tier` tag, and `teardown=true` only while
    cutover:teardown is set (any earlier tier/teardown tag is replaced, never kept)."""
    kept = {k: v for k, v in resource_tags.items() if k not in (TIER_TAG, TEARDOWN_TAG)}
    return {**kept, TIER_TAG: tier, **({TEARDOWN_TAG: "true"} if teardown else {})}


def namespace(service: str, color: str) -> str:
    """A service's namespace per color, also its Helm release's name (`<service>-<color>`)."""
    return f"{service}-{color}"


def release_name(service: str, color: str) -> str:
    """The Helm release; with nameOverride=<service> the chart names its objects after it."""
    return f"{service}-{color}"


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid on top, objects merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = (
            deep_merge(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
        )
    return merged


@dataclass(frozen=True)
class DatabaseLogin:
    """How one color reaches Postgres without a password anywhere in Kubernetes or in
    Pulumi's state: the pods as `user` with an RDS IAM token minted per connection
    (IRSA role `app_role_arn`), the migration Job as the schema owner with the RDS-managed
    master secret read at run time (IRSA role `migration_role_arn`). Both survive RDS's
    password rotation."""

    address: str
    port: int
    database: str
    region: str
    master_secret_arn: str
    app_role_arn: str
    migration_role_arn: str
    user: str  # the service's least-privilege role, created by its migrations

    @property
    def app_url(self) -> str:
        # IAM authentication requires TLS; the image has no RDS CA bundle, hence require
        # (encrypted) rather than verify-full.
        return f"postgresql://{self.user}@{self.address}:{self.port}/{self.database}?sslmode=require"

    @property
    def migration_url(self) -> str:
        """No user: the migration takes it (and the password) from the master secret."""
        return f"postgresql://{self.address}:{self.port}/{self.database}?sslmode=require"


def database_user_arn(instance_arn: str, resource_id: str, user: str) -> str:
    """The `rds-db:connect` resource for `user` on the instance (partition, region and account
    taken from the instance's ARN; `resource_id` is its DbiResourceId, not its name)."""
    parts = instance_arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or parts[2] != "rds":
        raise ValueError(f"not an RDS instance ARN: {instance_arn!r}")
    partition, region, account = parts[1], parts[3], parts[4]
    return f"arn:{partition}:rds-db:{region}:{account}:dbuser:{resource_id}/{user}"


def database_connect_policy(user_arn: str) -> str:
    """The pods' only AWS permission: log in to Postgres as their service's user."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource": user_arn}],
        }
    )


def master_secret_read_policy(secret_arn: str) -> str:
    """The migration Job's only AWS permission: read the RDS-managed master secret (encrypted
    with the AWS-managed key, whose policy admits callers via Secrets Manager)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    "Resource": secret_arn,
                }
            ],
        }
    )


def migration_service_account(release: str) -> str:
    """The chart's migration Job ServiceAccount (its templates/_helpers.tpl)."""
    return f"{release}-migrate"


# What every service gets unless its chartValues say otherwise: the chart's defaults are the
# reference service's (its entrypoint arguments, clustering), not the platform's. (No null
# here: Pulumi drops null values before Helm sees them.)
PLATFORM_CHART_DEFAULTS: dict[str, Any] = {
    "args": [],  # the image's own CMD
    "cluster": {"enabled": False},  # the headless discovery Service and peers: opt in
}


def chart_values(
    *,
    service: ServiceConfig,
    color: str,
    image_repository: str,
    image_tag: str,
    replicas: int,
    target_group_arn: str,
    budget: DrainBudget,
    vpc_cidr: str,
    database_cidr: str = "",
    image_digest: str = "",
    idle_timeout_seconds: int | None = None,
    keep_alive_seconds: int | None = None,
    database_login: DatabaseLogin | None = None,
) -> dict[str, Any]:
    """The values the service chart is installed with for one color of `service`.

    The service's own `chartValues` lie under what the program computes (its keys, the
    drain budget, the database login), over PLATFORM_CHART_DEFAULTS. `image_tag` may carry
    its digest (`v1.2@sha256:...`): the pods then pull by digest. `idle_timeout_seconds`
    (the ALB's) sets `aws.idleTimeoutSeconds`, and the keep-alive defaults to outlive it.
    Database: `provisioned` logs in without a stored password (`database_login`: IAM tokens
    and the managed master secret), `secret` with the URL in the team's Secret, `none` not at all."""
    image_tag, embedded_digest = split_image(image_tag)
    image_digest = image_digest or embedded_digest
    computed: dict[str, Any] = {
        "nameOverride": service.name,
        "color": color,
        "replicaCount": replicas,
        "image": {"repository": image_repository, "tag": image_tag},
        "containerPort": service.port,
        "health": {
            "livePath": service.health.live,
            "readyPath": service.health.ready,
            "startupPath": service.health.startup,
        },
        "env": dict(service.env),
        "secretEnv": {
            name: {"secretName": ref.secret, "key": ref.key} for name, ref in service.secret_env.items()
        },
        "aws": {
            "targetGroupArn": target_group_arn,
            "deregistrationDelaySeconds": budget.deregistration_delay,
        },
        "drainSeconds": budget.drain_seconds,
        "shutdownTimeoutSeconds": budget.shutdown_timeout,
        "preStop": {"sleepSeconds": budget.pre_stop_sleep},  # nativeSleep: the chart decides (auto)
        "drainBudget": {"marginSeconds": budget.margin},
        "terminationGracePeriodSeconds": budget.termination_grace,
        # The ALB sits in the VPC: its X-Forwarded-For is the client address (TRUSTED_PROXIES).
        "trustedProxies": [vpc_cidr],
        "podDisruptionBudget": {"minAvailable": 1 if replicas <= 2 else replicas - 1},
    }
    if service.autoscaling is not None:
        computed["autoscaling"] = {  # from replicaCount (the minimum) up
            "enabled": True,
            "maxReplicas": service.autoscaling.max_replicas,
            "targetCPUUtilizationPercentage": service.autoscaling.target_cpu_percent,
        }
    mode = service.database.mode
    if mode == "none":
        computed["database"] = {"enabled": False}
    elif mode == "secret" and service.database.url is not None:
        computed["database"] = {
            "existingSecret": service.database.url.secret,
            "urlKey": service.database.url.key,
            "cidr": database_cidr,
        }
    elif database_login is not None:
        computed["database"] = {
            "auth": "iam",
            "url": database_login.app_url,
            "region": database_login.region,
            "cidr": database_cidr,
        }
        computed["serviceAccount"] = {"annotations": {IRSA_ANNOTATION: database_login.app_role_arn}}
        computed["migrations"] = {
            "database": {
                "auth": "secrets-manager",
                "url": database_login.migration_url,
                "secretArn": database_login.master_secret_arn,
            },
            "serviceAccount": {"annotations": {IRSA_ANNOTATION: database_login.migration_role_arn}},
        }
    else:
        raise ValueError(f"service {service.name}: database mode {mode} needs its login")
    if image_digest:
        computed["image"]["digest"] = image_digest
    if idle_timeout_seconds is not None:
        computed["aws"]["idleTimeoutSeconds"] = idle_timeout_seconds
        keep_alive_seconds = keep_alive_seconds or max(75, idle_timeout_seconds + 15)
    if keep_alive_seconds is not None:
        computed["http"] = {"keepAliveSeconds": keep_alive_seconds}
    return deep_merge(deep_merge(PLATFORM_CHART_DEFAULTS, service.chart_values), computed)


def cutover_env(
    *,
    stack: str,
    service: ServiceConfig,
    region: str,
    hosted_zone_id: str,
    lock_table: str,
    history_table: str,
    colors: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What `cutover` needs to operate one service (`pulumi stack output cutover_envs`, the
    service's entry), built with cutover's own typed definition of the file (`cutover.envfile`)."""
    from cutover import envfile
    from cutover.adapters.http_health import SmokeCheck
    from cutover.model import COLORS

    return envfile.EnvFile(
        name=service.cutover_env,
        router=envfile.Route53Router(
            hosted_zone_id=hosted_zone_id,
            record_name=service.domain,
            generation_record=f"_cutover.{service.domain}",
            set_identifiers={"blue": "blue", "green": "green"},
        ),
        deployer=envfile.PulumiDeployer(
            stack=stack,
            work_dir=".",
            config_key=f"{service_config_key(service.name)}.{{color}}Image",
            service=service.name,
        ),
        lock=envfile.DynamoDBLock(table=lock_table, lease_seconds=60),
        history=envfile.DynamoDBTable(table=history_table),
        aws=envfile.Aws(region=region),
        # Canary analysis on each color's ALB target group metrics (ALB metrics arrive about
        # a minute late, hence the lag). Tune per environment in the environment file.
        analysis=envfile.CloudWatchAnalysis(
            lag_seconds=60,
            window_seconds=300,
            min_requests=100,
            max_error_rate_increase=0.01,
            max_p99_increase_seconds=0.1,
        ),
        colors={color: envfile.ColorEntry.from_dict(colors[color]) for color in COLORS if color in colors},
        ready_path=service.health.ready,
        smoke_checks=(SmokeCheck("liveness", service.health.live),),
    ).to_dict()


def service_config_key(service: str) -> str:
    """The stack config path of a service's entry (`pulumi config set --path <key>.<field>`)."""
    return f"cutover:services.{service}"


def release_state_key(cutover_env: str) -> str:
    """The lock-table item where `cutover` keeps a service's release state (by its cutover env)."""
    return json.dumps({"lock_id": {"S": f"{cutover_env}#release-state"}})


def deployed_images(item: str | None, committed: dict[str, str]) -> dict[str, str]:
    """The image each color runs: what cutover's release state records (the one source of
    truth once cutover has operated the environment), else the committed stack config.

    `item` is the DynamoDB item as the getTableItem data source returns it (attribute JSON),
    or None before the first release. A full `pulumi up` from any clone then deploys what
    runs, never the tag a checkout happens to hold."""
    if not item:
        return dict(committed)
    attributes = json.loads(item)
    state = json.loads(attributes.get("state", {}).get("S") or "{}")
    colors = state.get("colors") or {}
    return {color: (colors.get(color) or {}).get("image") or committed[color] for color in committed}


_ECR = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<name>[a-z0-9._/-]+)$"
)


def ecr_repository(image_repository: str) -> tuple[str, str] | None:
    """(registry id, repository name) of an ECR repository URL, or None for any other registry."""
    match = _ECR.match(image_repository)
    return (match["registry"], match["name"]) if match else None


# --------------------------------------------------------------------------- images

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def split_image(image: str) -> tuple[str, str]:
    """`v1.2@sha256:<64 hex>` -> ("v1.2", "sha256:..."); a plain tag -> (tag, "")."""
    tag, _, digest = image.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ValueError(f"image {image!r}: the digest must be sha256:<64 lowercase hex>")
    return tag, digest


def ecr_repository_url(account_id: str, region: str, name: str) -> str:
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com/{name}"


def ecr_lifecycle_policy(keep_images: int) -> str:
    """Expire all but the newest `keep_images` images (rollback needs the recent ones)."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the newest {keep_images} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_images,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )


# --------------------------------------------------------------------------- live traffic

GENERATION_PREFIX = "cutover-generation="


@dataclass(frozen=True)
class LiveTraffic:
    """The weights and generation `pulumi up` declares: what Route53 serves now."""

    weights: dict[str, int]
    generation: int
    live: bool  # False: no record exists yet (first up), the configured initial values


def traffic_records_regex(domain: str) -> str:
    """The getRecords name filter (RE2, matched against Route53's names, trailing dot
    included) for the weighted records and the generation TXT record."""
    return "^(_cutover\\.)?" + re.escape(domain).replace("\\-", "-") + "\\.?$"


def _name(record: Mapping[str, Any]) -> str:
    return str(record.get("name") or "").rstrip(".").lower()


def live_traffic(
    records: Sequence[Mapping[str, Any]], domain: str, initial: Mapping[str, int]
) -> LiveTraffic:
    """What the records must declare so that `pulumi up` never moves traffic.

    `records` are getRecords' resourceRecordSets (Route53's own names and values). A color
    whose weighted record exists keeps its live weight, the generation record its live
    generation; before the first `up` (no records) the configured initial weights and 0."""
    weighted = {
        r.get("setIdentifier"): r
        for r in records
        if _name(r) == domain and r.get("type") == "A" and r.get("setIdentifier") in initial
    }
    for color, record in weighted.items():
        if not isinstance(record.get("weight"), int | float) or isinstance(record.get("weight"), bool):
            raise ValueError(
                f"the A record {domain} with set identifier {color} is not a weighted record (weight "
                f"{record.get('weight')!r}); fix: delete it or make it weighted, then `pulumi up` again"
            )
    weights = {
        color: int(weighted[color]["weight"]) if color in weighted else initial[color] for color in initial
    }
    generation = 0
    txt = [r for r in records if _name(r) == f"_cutover.{domain}" and r.get("type") == "TXT"]
    if txt:
        values = [str(v.get("value", "")).strip('"') for v in txt[0].get("resourceRecords") or []]
        numbers = [v[len(GENERATION_PREFIX) :] for v in values if v.startswith(GENERATION_PREFIX)]
        if not numbers or not numbers[0].isdigit():
            raise ValueError(
                f"TXT record _cutover.{domain} holds {values}, not {GENERATION_PREFIX}<n>; fix: restore it "
                "with `cutover status` / the runbook before `pulumi up`"
            )
        generation = int(numbers[0])
    return LiveTraffic(weights, generation, bool(weighted or txt))


# --------------------------------------------------------------------------- the release lock


def lock_key(environment: str) -> str:
    """The lock-table item of cutover's release lock (pipelines/cutover/adapters/locks.py)."""
    return json.dumps({"lock_id": {"S": environment}})


# How the AWS provider's getTableItem says "no such item" (empty result) or "no such table"
# (couldn't find resource / ResourceNotFoundException): nothing to read, not a failure.
_MISSING_ITEM = ("empty result", "couldn't find", "ResourceNotFound")


def is_missing_item_error(message: str) -> bool:
    """Whether a getTableItem failure means the item or its table does not exist."""
    return any(word in message for word in _MISSING_ITEM)


def unreadable_lock_table(what: str, table: str, error: str) -> str:
    """The message that stops an `up` when the lock table cannot be read."""
    return (
        f"could not read {what} from DynamoDB table {table} ({error}): `pulumi up` will not guess "
        f"(it could deploy the committed image tags over a release, or run under a held lock); fix: "
        f"allow dynamodb:GetItem on {table} to the role running `pulumi up`, then run it again"
    )


def lock_refusal(item: str | None, environment: str, runner: str | None, now: float) -> str | None:
    """Why `pulumi up` must not run now, or None.

    `item` is the lock item (getTableItem's attribute JSON). A held, unexpired lease refuses
    every run but cutover's own deployer, which sets CUTOVER_LOCK_OWNER to the lease owner."""
    if not item:
        return None
    attributes = json.loads(item)

    def text(key: str) -> str:
        value = attributes.get(key) or {}
        return str(value.get("S") or value.get("N") or "?")

    try:
        expires = float((attributes.get("expires_at") or {}).get("N", "0"))
    except ValueError:
        expires = 0.0
    owner = text("owner")
    if expires < now or (runner is not None and runner == owner):
        return None
    return (
        f"cutover {text('operation')} by {owner} holds the {environment} release lock for another "
        f"{expires - now:.0f}s: `pulumi up` now could undo it; wait for it to finish (`cutover status "
        f"--env {environment}`), or, if it is dead, `cutover rollback --env {environment} --break-lock`"
    )
