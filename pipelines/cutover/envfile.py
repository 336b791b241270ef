"""The environment file, typed: one frozen dataclass per section, the only definition of its shape.

Every writer builds an `EnvFile` and writes `to_dict()` (the infra's `cutover_env` stack
output, `cutover rehearse`, the benchmarks, the tests); `envconfig.parse` checks a file
against the keys and types these classes declare (`section_keys`), so what a writer emits
is what the reader accepts. `EnvFile.from_dict` reads one back (checked by `envconfig.parse`).

A key left as None is not written: the reader's default applies (each default lives in
the code that uses the key, e.g. the lock's lease in `build.py`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cutover.adapters.http_health import SmokeCheck
from cutover.model import COLORS, Color

# What a key may hold in the JSON file, by the Python type its field declares.
_STR, _NUM, _DICT, _LIST = (str,), (int, float), (dict,), (list,)
KeySpec = dict[str, tuple[tuple[type, ...], bool]]  # key -> (JSON types, required)


def _unset(value: Any) -> bool:
    return value is None


@dataclass(frozen=True, kw_only=True)
class Section:
    """One object of the file; `TYPE` is its `type` key (empty: the section has none)."""

    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        body = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        head = {"type": self.TYPE} if self.TYPE else {}
        return head | {key: value for key, value in body.items() if not _unset(value)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Any:
        return cls(**{key: value for key, value in raw.items() if key != "type"})

    @classmethod
    def keys(cls) -> KeySpec:
        """Each key with the JSON types it may hold and whether it is required."""
        hints = typing.get_type_hints(cls)
        return {
            f.name: (_json_types(hints[f.name]), f.default is dataclasses.MISSING)
            for f in dataclasses.fields(cls)
        }


def _json_types(hint: Any) -> tuple[type, ...]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    origin = typing.get_origin(hint) or hint
    if origin is str:
        return _STR
    if origin in (float, int):
        return _NUM
    if origin in (dict, Mapping):
        return _DICT
    if origin in (list, tuple):
        return _LIST
    raise TypeError(f"no JSON type for {hint!r}")


def _plain(value: Any) -> Any:
    """JSON-ready: sections as objects, tuples as lists, mappings as dicts."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, SmokeCheck):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# ------------------------------------------------------------------ router


@dataclass(frozen=True, kw_only=True)
class Route53Router(Section):
    TYPE: ClassVar[str] = "route53"
    hosted_zone_id: str
    record_name: str
    generation_record: str | None = None
    set_identifiers: Mapping[Color, str] | None = None  # default: the color's name
    answer_ttl_seconds: float | None = None  # the alias target's TTL (default 60, an ALB's): `cutover retire`


@dataclass(frozen=True, kw_only=True)
class EnvoyRouter(Section):
    TYPE: ClassVar[str] = "envoy"
    layout: Mapping[str, Any]  # envoy.weights.EnvoyLayout.as_dict()


# ------------------------------------------------------------------ deployer


@dataclass(frozen=True, kw_only=True)
class PulumiDeployer(Section):
    TYPE: ClassVar[str] = "pulumi"
    stack: str
    work_dir: str | None = None
    config_key: str | None = None  # e.g. "cutover:services.<service>.{color}Image"
    service: str | None = None  # the entry of cutover:services (and of the stack's per-service outputs)


@dataclass(frozen=True, kw_only=True)
class LocalDeployer(Section):
    TYPE: ClassVar[str] = "local"
    state_dir: str
    ports: Mapping[Color, list[int]]
    env: Mapping[str, str] | None = None
    image_env: Mapping[str, Mapping[str, str]] | None = None  # per image tag (rehearsing a bad build)
    command: list[str] | None = None  # argv of one instance (default: `python -m ledger serve`)
    live_path: str | None = None  # what a deploy waits for on each instance (default /health/live)


# ------------------------------------------------------------------ lock, history, state


@dataclass(frozen=True, kw_only=True)
class DynamoDBLock(Section):
    TYPE: ClassVar[str] = "dynamodb"
    table: str
    lease_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class FileLock(Section):
    TYPE: ClassVar[str] = "file"
    path: str
    lease_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class DynamoDBTable(Section):
    """history or state in a DynamoDB table."""

    TYPE: ClassVar[str] = "dynamodb"
    table: str


@dataclass(frozen=True, kw_only=True)
class JsonFile(Section):
    """history (JSON lines) or state (one JSON document) in a file."""

    TYPE: ClassVar[str] = "file"
    path: str


# ------------------------------------------------------------------ aws, analysis, colors


@dataclass(frozen=True, kw_only=True)
class Aws(Section):
    region: str | None = None
    endpoint_url: str | None = None
    call_budget_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class Thresholds(Section):
    """What a canary step may cost compared to the stable color (analysis.Thresholds' keys)."""

    max_error_rate_increase: float | None = None
    max_p99_increase_seconds: float | None = None
    max_p99_seconds: float | None = None
    min_requests: int | None = None
    window_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class PrometheusAnalysis(Thresholds):
    TYPE: ClassVar[str] = "prometheus"
    url: str
    selector: str | None = None
    excluded_routes: str | None = None


@dataclass(frozen=True, kw_only=True)
class CloudWatchAnalysis(Thresholds):
    TYPE: ClassVar[str] = "cloudwatch"
    lag_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class ColorEntry(Section):
    endpoint: str
    urns: list[str] | None = None
    target_group_arn: str | None = None
    load_balancer_arn: str | None = None  # with the target group: CloudWatch's dimensions


# ------------------------------------------------------------------ traffic meter (`cutover retire`)


@dataclass(frozen=True, kw_only=True)
class AccessLogMeter(Section):
    """Each color's JSON-lines access log (adapters/traffic_meter.py documents the format)."""

    TYPE: ClassVar[str] = "envoy-access-log"
    paths: Mapping[Color, str]  # relative to the environment file
    time_field: str | None = None  # default "start_time" (RFC 3339 or epoch seconds)
    lag_seconds: float | None = None  # default 10 (Envoy's file_flush_interval)
    settle_seconds: float | None = None  # default 30: no request for this long before a retire


@dataclass(frozen=True, kw_only=True)
class CloudWatchMeter(Section):
    """RequestCount of each color's target group (`colors.<color>.*_arn`)."""

    TYPE: ClassVar[str] = "cloudwatch"
    lag_seconds: float | None = None  # default 60 (ALB metrics arrive about a minute late)
    settle_seconds: float | None = None  # default 30


Router = Route53Router | EnvoyRouter
Deployer = PulumiDeployer | LocalDeployer
Lock = DynamoDBLock | FileLock
Store = DynamoDBTable | JsonFile
Analysis = PrometheusAnalysis | CloudWatchAnalysis
Meter = AccessLogMeter | CloudWatchMeter

# Each section, by its `type`: what `envconfig.parse` checks and `EnvFile.from_dict` builds.
SECTIONS: dict[str, dict[str, type[Section]]] = {
    "router": {"route53": Route53Router, "envoy": EnvoyRouter},
    "deployer": {"pulumi": PulumiDeployer, "local": LocalDeployer},
    "lock": {"dynamodb": DynamoDBLock, "file": FileLock},
    "history": {"dynamodb": DynamoDBTable, "file": JsonFile},
    "state": {"dynamodb": DynamoDBTable, "file": JsonFile},
}
ANALYSES: dict[str, type[Section]] = {"prometheus": PrometheusAnalysis, "cloudwatch": CloudWatchAnalysis}
METERS: dict[str, type[Section]] = {"envoy-access-log": AccessLogMeter, "cloudwatch": CloudWatchMeter}


@dataclass(frozen=True, kw_only=True)
class EnvFile:
    """One environment file (`--env NAME`)."""

    name: str
    router: Router
    deployer: Deployer
    lock: Lock
    history: Store
    colors: Mapping[Color, ColorEntry]
    state: Store | None = None  # default: beside the lock
    aws: Aws | None = None
    analysis: Analysis | None = None  # none: health gates only
    gates: Mapping[str, float] | None = None  # machine.Gates fields; the rest keep their defaults
    smoke_checks: tuple[SmokeCheck, ...] | None = None  # none: http_health.DEFAULT_SMOKE_CHECKS
    traffic_meter: Meter | None = None  # none: `cutover retire` refuses
    ready_path: str | None = None  # the health gate's path on each color (default /health/ready)

    ORDER: ClassVar[tuple[str, ...]] = (
        "name",
        "router",
        "deployer",
        "lock",
        "history",
        "state",
        "aws",
        "analysis",
        "colors",
        "gates",
        "smoke_checks",
        "traffic_meter",
        "ready_path",
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, without the keys left unset."""
        values = {key: _plain(getattr(self, key)) for key in self.ORDER}
        return {key: value for key, value in values.items() if not _unset(value)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], path: Path | None = None) -> EnvFile:
        """Checked by `envconfig.parse` (BadInput naming the key), then typed."""
        from cutover import envconfig  # envconfig checks against this module's classes

        envconfig.parse(dict(raw), path or Path(f"{raw.get('name', 'env')}.json"))
        stored = {
            section: kinds[raw[section]["type"]].from_dict(raw[section])
            for section, kinds in SECTIONS.items()
            if raw.get(section) is not None
        }
        analysis = raw.get("analysis") or None
        meter = raw.get("traffic_meter") or None
        return cls(
            name=raw.get("name", path.stem if path else ""),
            router=stored["router"],
            deployer=stored["deployer"],
            lock=stored["lock"],
            history=stored["history"],
            state=stored.get("state"),
            colors={color: ColorEntry.from_dict(raw["colors"][color]) for color in COLORS},
            aws=Aws.from_dict(raw["aws"]) if raw.get("aws") is not None else None,
            analysis=ANALYSES[analysis["type"]].from_dict(analysis) if analysis else None,
            gates=dict(raw["gates"]) if raw.get("gates") is not None else None,
            smoke_checks=(
                tuple(SmokeCheck(**check) for check in raw["smoke_checks"])
                if raw.get("smoke_checks") is not None
                else None
            ),
            traffic_meter=METERS[meter["type"]].from_dict(meter) if meter else None,
            ready_path=raw.get("ready_path"),
        )
