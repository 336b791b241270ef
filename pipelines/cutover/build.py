"""Builds the adapters an environment file names, and the machine that drives them.

Each operation builds only what it uses: rollback, shift and status never build the
deployer (a Pulumi deployer needs the Pulumi CLI and a backend login; a rollback deploys
nothing).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cutover.adapters.history import DynamoDBHistory, FileHistory
from cutover.adapters.http_health import HttpHealth
from cutover.adapters.locks import DynamoDBLock, FileLock
from cutover.adapters.state_store import DynamoDBStateStore, FileStateStore
from cutover.cancel import CancelScope
from cutover.envconfig import EnvConfig
from cutover.machine import ReleaseMachine, Reporter, RetirePolicy
from cutover.model import COLORS, BadInput
from cutover.ports import Deployer, History, Lock, TrafficMeter, TrafficRouter
from cutover.release_state import ReleaseStateStore
from cutover.retry import RetryPolicy

if TYPE_CHECKING:
    from cutover.analysis import CanaryAnalysis, MetricsSource

Note = Callable[[str], None]
THRESHOLD_NAMES = (
    "max_error_rate_increase",
    "max_p99_increase_seconds",
    "max_p99_seconds",
    "min_requests",
    "window_seconds",
)


@functools.cache
def _session() -> Any:
    """One botocore session per process (credentials and service models loaded once).
    botocore, not boto3: boto3 adds nothing cutover uses and ~60 ms of imports to every
    command, and a rollback is on the clock."""
    import botocore.session

    return botocore.session.get_session()


def aws_client(env: EnvConfig, service: str) -> Any:
    """A client that does not retry by itself: cutover.retry is the one retry policy.
    One per service and endpoint: the lock, the history and the release state share theirs."""
    return _client(service, env.aws.get("region", "us-east-1"), env.aws.get("endpoint_url") or None)


@functools.cache
def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    from botocore.config import Config

    return _session().create_client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )


def retry_policy(env: EnvConfig, note: Note | None = None) -> RetryPolicy:
    return RetryPolicy(float(env.aws.get("call_budget_seconds", 30)), note=note or (lambda _line: None))


def _relative(env: EnvConfig, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else env.path.parent / path


def build_router(env: EnvConfig, note: Note | None = None) -> TrafficRouter:
    spec = env.router
    if spec["type"] == "route53":
        from cutover.adapters.route53 import Route53Router

        return Route53Router(
            aws_client(env, "route53"),
            spec["hosted_zone_id"],
            spec["record_name"],
            generation_record=spec.get("generation_record"),
            set_identifiers=spec.get("set_identifiers"),
            retry=retry_policy(env, note),
        )
    from cutover.adapters.envoy_router import EnvoyRouter

    router: TrafficRouter = EnvoyRouter.from_spec(spec, base=env.path.parent)
    return router


def build_deployer(env: EnvConfig) -> Deployer:
    spec = env.deployer
    if spec["type"] == "pulumi":
        from cutover.adapters.pulumi_deployer import AutomationStack, PulumiDeployer

        try:
            stack = AutomationStack(spec["stack"], str(_relative(env, spec.get("work_dir", "."))))
        except ImportError:
            raise BadInput(
                "the `pulumi` deployer needs the Pulumi SDK: `pip install 'cutover[deploy]'` "
                "(rollback, shift, status and history do not)"
            ) from None
        except FileNotFoundError as missing:
            raise BadInput(
                f"the `pulumi` deployer needs the Pulumi CLI on PATH ({missing}); "
                "rollback, shift, status and history do not"
            ) from None
        return PulumiDeployer(stack, spec.get("config_key"), service=spec.get("service"))
    from cutover.adapters.local_deployer import DEFAULT_LIVE_PATH, LocalDeployer

    per_image: dict[str, dict[str, str]] = spec.get("image_env", {})
    return LocalDeployer(
        _relative(env, spec["state_dir"]),
        spec["ports"],
        spec.get("env", {}),
        image_env=lambda image: per_image.get(image, {}),
        command=spec.get("command"),  # None: ledger
        live_path=spec.get("live_path", DEFAULT_LIVE_PATH),
    )


def build_lock(env: EnvConfig, note: Note | None = None) -> Lock:
    spec = env.lock
    lease = float(spec.get("lease_seconds", 60))
    if spec["type"] == "dynamodb":
        return DynamoDBLock(
            aws_client(env, "dynamodb"),
            spec["table"],
            env.name,
            lease_seconds=lease,
            retry=retry_policy(env, note),
        )
    return FileLock(_relative(env, spec["path"]), lease_seconds=lease)


def build_history(env: EnvConfig, note: Note | None = None) -> History:
    spec = env.history
    if spec["type"] == "dynamodb":
        return DynamoDBHistory(aws_client(env, "dynamodb"), spec["table"], env.name, retry_policy(env, note))
    return FileHistory(_relative(env, spec["path"]))


def build_state_store(env: EnvConfig, note: Note | None = None) -> ReleaseStateStore:
    """The release state: its own section if the file has one, else beside the lock (an item
    of the DynamoDB lock table, or release-state.json next to the lock file)."""
    spec = env.state or env.lock
    if spec["type"] == "dynamodb":
        return DynamoDBStateStore(
            aws_client(env, "dynamodb"),
            spec["table"],
            env.name,
            retry_policy(env, note),
            setting="state.table" if env.state else "lock.table",
        )
    if env.state:
        return FileStateStore(_relative(env, spec["path"]))
    return FileStateStore(_relative(env, spec["path"]).with_name("release-state.json"))


def build_analysis(env: EnvConfig) -> CanaryAnalysis | None:
    """Canary analysis on metrics, when the environment file has an `analysis` section."""
    spec = env.analysis
    if not spec:
        return None
    from cutover.analysis import CanaryAnalysis, Thresholds

    defaults = Thresholds()
    p99_ceiling = spec.get("max_p99_seconds", defaults.max_p99_seconds)
    thresholds = Thresholds(
        max_error_rate_increase=float(spec.get("max_error_rate_increase", defaults.max_error_rate_increase)),
        max_p99_increase_seconds=float(
            spec.get("max_p99_increase_seconds", defaults.max_p99_increase_seconds)
        ),
        min_requests=int(spec.get("min_requests", defaults.min_requests)),
        window_seconds=float(spec.get("window_seconds", defaults.window_seconds)),
        max_p99_seconds=None if p99_ceiling is None else float(p99_ceiling),
    )
    source: MetricsSource
    if spec["type"] == "prometheus":
        from cutover.adapters.prometheus_metrics import PrometheusMetrics

        options = {k: spec[k] for k in ("selector", "excluded_routes") if k in spec}
        source = PrometheusMetrics(spec["url"], **options)
    else:
        from cutover.adapters.cloudwatch_metrics import AlbTarget, CloudWatchMetrics

        targets = {
            color: AlbTarget(env.colors[color]["load_balancer_arn"], env.colors[color]["target_group_arn"])
            for color in COLORS
        }
        source = CloudWatchMetrics(
            targets, client=aws_client(env, "cloudwatch"), lag_seconds=float(spec.get("lag_seconds", 60))
        )
    return CanaryAnalysis(source, thresholds)


def build_analysis_or_refuse(env: EnvConfig) -> CanaryAnalysis | None:
    """build_analysis, with a value its parts refuse turned into one line naming `analysis`."""
    try:
        return build_analysis(env)
    except ValueError as bad:
        raise BadInput(f"{env.path}: `analysis` has a value its metrics source refuses: {bad}") from None


def build_machine(
    env: EnvConfig,
    reporter: Reporter | None = None,
    router: TrafficRouter | None = None,
    *,
    with_deployer: bool = True,
    with_analysis: bool | None = None,
    cancel: CancelScope | None = None,
) -> ReleaseMachine:
    """`with_deployer` (release) builds the deployer; `with_analysis` (default: the same) the
    canary analysis: rollback, shift and status build neither."""
    reporter = reporter or Reporter()
    return ReleaseMachine(
        env.name,
        router or build_router(env, reporter.note),
        build_deployer(env) if with_deployer else None,
        build_lock(env, reporter.note),
        build_history(env, reporter.note),
        HttpHealth(env.endpoints, env.smoke_checks, ready_path=env.ready_path),
        env.gates,
        states=build_state_store(env, reporter.note),
        analysis=build_analysis_or_refuse(env)
        if (with_deployer if with_analysis is None else with_analysis)
        else None,
        reporter=reporter,
        cancel=cancel,
    )


DEFAULT_ANSWER_TTL_SECONDS = 60.0  # an ALB alias target's TTL
DEFAULT_SETTLE_SECONDS = 30.0


def build_retire_parts(config: EnvConfig, settle: float | None) -> tuple[TrafficMeter, RetirePolicy]:
    """The traffic meter the environment file names, and when retiring is safe."""
    from pathlib import Path

    from cutover.adapters.traffic_meter import (
        ACCESS_LOG_LAG_SECONDS,
        CLOUDWATCH_LAG_SECONDS,
        DEFAULT_TIME_FIELD,
        AccessLogMeter,
        CloudWatchMeter,
    )

    spec = config.traffic_meter
    if not spec:
        raise BadInput(
            f"{config.path}: `cutover retire` needs a `traffic_meter` section (envoy-access-log or "
            "cloudwatch) to know the color gets no more requests: add one (see docs/contracts.md)"
        )
    meter: TrafficMeter
    if spec["type"] == "envoy-access-log":
        base = config.path.parent
        paths = {color: base / Path(spec["paths"][color]) for color in COLORS}
        for color, log in paths.items():
            if log.is_dir():
                raise BadInput(
                    f"{config.path}: `traffic_meter.paths.{color}` is a directory ({log}): name {color}'s "
                    "access log file"
                )
        meter = AccessLogMeter(
            paths,
            time_field=spec.get("time_field", DEFAULT_TIME_FIELD),
            lag_seconds=float(spec.get("lag_seconds", ACCESS_LOG_LAG_SECONDS)),
        )
    else:
        from cutover.adapters.cloudwatch_metrics import AlbTarget

        targets = {
            color: AlbTarget(
                config.colors[color]["load_balancer_arn"], config.colors[color]["target_group_arn"]
            )
            for color in COLORS
        }
        meter = CloudWatchMeter(
            targets,
            client=aws_client(config, "cloudwatch"),
            lag_seconds=float(spec.get("lag_seconds", CLOUDWATCH_LAG_SECONDS)),
        )
    ttl = (
        float(config.router.get("answer_ttl_seconds", DEFAULT_ANSWER_TTL_SECONDS))
        if config.router["type"] == "route53"
        else 0.0  # a proxy switches at once: no DNS answer to expire
    )
    settle_seconds = (
        settle if settle is not None else float(spec.get("settle_seconds", DEFAULT_SETTLE_SECONDS))
    )
    return meter, RetirePolicy(answer_ttl_seconds=ttl, settle_seconds=settle_seconds)
