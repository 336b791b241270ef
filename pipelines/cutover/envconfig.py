"""Environment settings: which adapters an environment uses and how to reach its colors.

`--env NAME` is resolved, in order, as:
1. a path, when NAME contains "/" or ends in ".json";
2. `$CUTOVER_ENV_DIR/NAME.json`, when CUTOVER_ENV_DIR is set;
3. `.cutover/envs/NAME.json` under the current directory.
The file is the `cutover_env` output of the Pulumi stack, written with
`pulumi stack output cutover_env --json --stack NAME > .cutover/envs/NAME.json`
(or by `cutover rehearse` for the local environment).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover import envfile
from cutover.adapters.http_health import DEFAULT_READY_PATH, DEFAULT_SMOKE_CHECKS, SmokeCheck
from cutover.machine import Gates
from cutover.model import COLORS, BadInput, Color

ADAPTER_TYPES = {section: tuple(kinds) for section, kinds in envfile.SECTIONS.items()}

# Per section and type: every key it may hold, with its type and whether it is required,
# as the dataclasses of `envfile` declare them (the one definition of the file's shape).
# A missing or mistyped key is refused here (exit 2, naming it), not deep in an adapter.
_NUM = (int, float)
SECTION_KEYS: dict[tuple[str, str], envfile.KeySpec] = {
    (section, kind): cls.keys() for section, kinds in envfile.SECTIONS.items() for kind, cls in kinds.items()
}
ANALYSIS_KEYS: dict[str, envfile.KeySpec] = {kind: cls.keys() for kind, cls in envfile.ANALYSES.items()}
METER_KEYS: dict[str, envfile.KeySpec] = {kind: cls.keys() for kind, cls in envfile.METERS.items()}
AWS_KEYS: envfile.KeySpec = envfile.Aws.keys()
COLOR_KEYS = set(envfile.ColorEntry.keys())  # what the cutover_env output gives per color
TOP_KEYS = set(envfile.EnvFile.ORDER)
_READY_PATH = re.compile(r"^/[!-~]{0,255}$")


@dataclass(frozen=True)
class EnvConfig:
    name: str
    path: Path
    router: dict[str, Any]
    deployer: dict[str, Any]
    lock: dict[str, Any]
    history: dict[str, Any]
    endpoints: dict[Color, str]
    state: dict[str, Any] = field(default_factory=dict)  # default: beside the lock
    analysis: dict[str, Any] = field(default_factory=dict)  # none: health gates only
    colors: dict[str, dict[str, Any]] = field(default_factory=dict)
    gates: Gates = field(default_factory=Gates)
    smoke_checks: tuple[SmokeCheck, ...] = DEFAULT_SMOKE_CHECKS
    aws: dict[str, Any] = field(default_factory=dict)
    traffic_meter: dict[str, Any] = field(default_factory=dict)  # none: `cutover retire` refuses
    ready_path: str = DEFAULT_READY_PATH  # the health gate's path on each color


def env_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("CUTOVER_ENV_DIR"):
        dirs.append(Path(os.environ["CUTOVER_ENV_DIR"]))
    dirs.append(Path.cwd() / ".cutover" / "envs")
    return dirs


def resolve(name: str) -> Path:
    if not name.strip():
        raise BadInput("--env must name an environment (e.g. --env staging)")
    if "/" in name or name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise BadInput(f"environment file {name} does not exist")
        return path
    for directory in env_dirs():
        candidate = directory / f"{name}.json"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in env_dirs() if d.is_dir() for p in d.glob("*.json")})
    raise BadInput(
        f"unknown environment {name!r} (known: {', '.join(known) or 'none'}); write it with "
        f"`pulumi stack output cutover_env --json --stack {name} > .cutover/envs/{name}.json`"
    )


def load(name: str) -> EnvConfig:
    path = resolve(name)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path} must hold a JSON object")
    return parse(raw, path)


def _check_keys(
    path: Path, where: str, value: dict[str, Any], keys: dict[str, tuple[tuple[type, ...], bool]]
) -> None:
    for key, (types, required) in keys.items():
        if key not in value:
            if required:
                raise BadInput(f"{path}: `{where}.{key}` is missing: add it (see docs/runbooks/release.md)")
            continue
        item = value[key]
        if (
            not isinstance(item, types)
            or isinstance(item, bool)
            or (isinstance(item, str) and not item.strip())
        ):
            names = dict.fromkeys("a number" if t in (int, float) else f"a {t.__name__}" for t in types)
            raise BadInput(f"{path}: `{where}.{key}` must be {' or '.join(names)} (got {item!r})")
        if types == _NUM and isinstance(item, int | float) and not (_finite(item) and item > 0):
            raise BadInput(f"{path}: `{where}.{key}` must be more than 0, a finite number (got {item!r:.40})")
    unknown = sorted(set(value) - set(keys) - {"type"})
    if unknown:
        raise BadInput(
            f"{path}: `{where}.{unknown[0]}` is not a known key (known: {', '.join(sorted(keys))}): fix or remove it"
        )


def _finite(number: float) -> bool:
    """A number a float can hold (an integer too large for one is not)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _check_contents(path: Path, sections: dict[str, dict[str, Any]], aws: dict[str, Any]) -> None:
    """What `_check_keys` cannot see: the insides of maps and lists, URLs, names."""
    router = sections["router"]
    if "set_identifiers" in router:
        ids = router["set_identifiers"]
        for color in COLORS:
            if not isinstance(ids.get(color), str) or not ids[color].strip():
                raise BadInput(
                    f"{path}: `router.set_identifiers.{color}` must be the record's set identifier"
                )
    if router.get("answer_ttl_seconds", 0) > MAX_RETIRE_SECONDS:
        raise BadInput(
            f"{path}: `router.answer_ttl_seconds` must be at most {MAX_RETIRE_SECONDS} seconds (a day; "
            f"an ALB alias target's is 60) (got {router['answer_ttl_seconds']:g})"
        )
    deployer = sections["deployer"]
    if deployer["type"] == "local":
        for color in COLORS:
            ports = deployer["ports"].get(color)
            if (
                not isinstance(ports, list)
                or not ports
                or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 65536 for n in ports)
            ):
                raise BadInput(
                    f"{path}: `deployer.ports.{color}` must be a list of TCP ports (got {ports!r})"
                )
        for key, value in (deployer.get("env") or {}).items():
            if not isinstance(value, str):
                raise BadInput(f"{path}: `deployer.env.{key}` must be a string (got {value!r})")
        for image, extra in (deployer.get("image_env") or {}).items():
            if not isinstance(extra, dict):
                raise BadInput(f"{path}: `deployer.image_env.{image}` must map variables to strings")
            for key, value in extra.items():
                if not isinstance(value, str):
                    raise BadInput(
                        f"{path}: `deployer.image_env.{image}.{key}` must be a string (got {value!r})"
                    )
        command = deployer.get("command")
        if command is not None and (
            not command or not all(isinstance(arg, str) and arg.strip() for arg in command)
        ):
            raise BadInput(
                f'{path}: `deployer.command` must be the argv of one instance, e.g. ["python", "-m", "app"] '
                f"(got {command!r:.80})"
            )
        if "live_path" in deployer and not _READY_PATH.match(deployer["live_path"]):
            raise BadInput(
                f"{path}: `deployer.live_path` must be a path starting with / (got {deployer['live_path']!r:.60})"
            )
    endpoint = aws.get("endpoint_url")
    if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
        raise BadInput(f"{path}: `aws.endpoint_url` must be an http(s) URL (got {endpoint!r})")


def _check_analysis(path: Path, analysis: dict[str, Any]) -> None:
    """Values a metrics source would only reject at the first bake."""
    for key in ("max_error_rate_increase", "max_p99_increase_seconds", "max_p99_seconds", "window_seconds"):
        if key in analysis and not math.isfinite(float(analysis[key])):
            raise BadInput(f"{path}: `analysis.{key}` must be a finite number")
    if "max_error_rate_increase" in analysis and not 0 <= analysis["max_error_rate_increase"] <= 1:
        raise BadInput(f"{path}: `analysis.max_error_rate_increase` is a share from 0 to 1 (0.01 is 1 point)")
    requests = analysis.get("min_requests", 1)
    if not isinstance(requests, int) or isinstance(requests, bool) or requests < 1:
        raise BadInput(f"{path}: `analysis.min_requests` must be a whole number from 1 (got {requests!r})")
    if analysis["type"] == "prometheus":
        if not analysis["url"].startswith(("http://", "https://")):
            raise BadInput(f"{path}: `analysis.url` must be an http(s) URL (got {analysis['url']!r})")
        selector = analysis.get("selector", '{color="%s"}')
        if selector.count("%s") != 1 or not selector.startswith("{") or not selector.endswith("}"):
            raise BadInput(
                f'{path}: `analysis.selector` must be a label selector with one %s, like {{color="%s"}}'
            )


MAX_RETIRE_SECONDS = 86_400  # the longest TTL, meter lag or settling window `cutover retire` takes


def _check_meter(path: Path, meter: Any, colors: dict[str, Any]) -> None:
    """`traffic_meter`: what `cutover retire` reads to know a color gets no more requests."""
    if not isinstance(meter, dict) or meter.get("type") not in METER_KEYS:
        raise BadInput(f"{path}: `traffic_meter.type` must be one of {', '.join(METER_KEYS)}")
    _check_keys(path, "traffic_meter", meter, METER_KEYS[meter["type"]])
    for key in ("lag_seconds", "settle_seconds"):
        if meter.get(key, 0) > MAX_RETIRE_SECONDS:
            raise BadInput(
                f"{path}: `traffic_meter.{key}` must be at most {MAX_RETIRE_SECONDS} seconds (a day) "
                f"(got {meter[key]:g})"
            )
    if meter["type"] == "envoy-access-log":
        unknown = sorted(set(meter["paths"]) - set(COLORS))
        if unknown:
            raise BadInput(
                f"{path}: `traffic_meter.paths.{unknown[0]}` is not a color (blue, green): remove it"
            )
        for color in COLORS:
            log = meter["paths"].get(color)
            if not isinstance(log, str) or not log.strip():
                raise BadInput(
                    f"{path}: `traffic_meter.paths.{color}` must be the path of {color}'s access log"
                )
        return
    for color in COLORS:
        for key, kind in (("load_balancer_arn", ":loadbalancer/app/"), ("target_group_arn", ":targetgroup/")):
            value = (colors.get(color) or {}).get(key)
            if not isinstance(value, str) or not value.startswith("arn:") or kind not in value:
                raise BadInput(
                    f"{path}: `colors.{color}.{key}` must be the ALB's ARN, needed by the cloudwatch traffic_meter"
                )


def _smoke_checks(path: Path, raw: Any) -> tuple[SmokeCheck, ...]:
    if not isinstance(raw, list):
        raise BadInput(f"{path}: `smoke_checks` must be a list of checks")
    checks = []
    for number, check in enumerate(raw):
        where = f"`smoke_checks[{number}]"
        if not isinstance(check, dict):
            raise BadInput(
                f"{path}: {where}` must be an object with name, path, method, expect_status, expect_body"
            )
        unknown = sorted(set(check) - {"name", "path", "method", "expect_status", "expect_body"})
        if unknown:
            raise BadInput(f"{path}: {where}.{unknown[0]}` is not a known key")
        if not isinstance(check.get("name"), str) or not check["name"].strip():
            raise BadInput(f"{path}: {where}.name` must be a string")
        if not isinstance(check.get("path"), str) or not check["path"].startswith("/"):
            raise BadInput(
                f"{path}: {where}.path` must be a path starting with / (got {check.get('path')!r})"
            )
        if check.get("method", "GET") not in _METHODS:
            raise BadInput(f"{path}: {where}.method` must be one of {', '.join(_METHODS)}")
        status = check.get("expect_status", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise BadInput(f"{path}: {where}.expect_status` must be an HTTP status code (got {status!r})")
        if not isinstance(check.get("expect_body", ""), str):
            raise BadInput(f"{path}: {where}.expect_body` must be a string")
        checks.append(SmokeCheck(**check))
    return tuple(checks)


def parse(raw: dict[str, Any], path: Path) -> EnvConfig:
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise BadInput(f"{path}: `{unknown[0]}` is not a known key (known: {', '.join(sorted(TOP_KEYS))})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadInput(f"{path}: `name` must be letters, digits, '.', '_' or '-' (got {name!r})")
    sections: dict[str, dict[str, Any]] = {}
    for section, types in ADAPTER_TYPES.items():
        value = raw.get(section)
        if section == "state" and value is None:
            continue  # optional: the release state lives beside the lock
        if not isinstance(value, dict) or value.get("type") not in types:
            raise BadInput(f"{path}: `{section}.type` must be one of {', '.join(types)}")
        _check_keys(path, section, value, SECTION_KEYS[(section, value["type"])])
        sections[section] = value
    aws = raw.get("aws") or {}
    if not isinstance(aws, dict):
        raise BadInput(f"{path}: `aws` must be an object with region, endpoint_url, call_budget_seconds")
    _check_keys(path, "aws", aws, AWS_KEYS)
    _check_contents(path, sections, aws)
    colors = raw.get("colors")
    if not isinstance(colors, dict):
        raise BadInput(f'{path}: `colors` must map blue and green to {{"endpoint": URL}}')
    endpoints: dict[Color, str] = {}
    for color in COLORS:
        entry = colors.get(color)
        if isinstance(entry, dict) and set(entry) - COLOR_KEYS:
            raise BadInput(
                f"{path}: `colors.{color}.{sorted(set(entry) - COLOR_KEYS)[0]}` is not a known key"
            )
        endpoint = entry.get("endpoint") if isinstance(entry, dict) else None
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise BadInput(f"{path}: `colors.{color}.endpoint` must be an http(s) URL (got {endpoint!r})")
        endpoints[color] = endpoint
    analysis = raw.get("analysis") or {}
    if analysis:
        if not isinstance(analysis, dict) or analysis.get("type") not in ANALYSIS_KEYS:
            raise BadInput(f"{path}: `analysis.type` must be one of {', '.join(ANALYSIS_KEYS)}")
        _check_keys(path, "analysis", analysis, ANALYSIS_KEYS[analysis["type"]])
        _check_analysis(path, analysis)
        if analysis["type"] == "cloudwatch":
            for color in COLORS:
                for key, kind in (
                    ("load_balancer_arn", ":loadbalancer/app/"),
                    ("target_group_arn", ":targetgroup/"),
                ):
                    value = (colors.get(color) or {}).get(key)
                    if not isinstance(value, str) or not value.startswith("arn:") or kind not in value:
                        raise BadInput(
                            f"{path}: `colors.{color}.{key}` must be the ALB's ARN, needed by the cloudwatch analysis"
                        )
    meter = raw.get("traffic_meter") or {}
    if meter:
        _check_meter(path, meter, colors)
    gates_raw = raw.get("gates") or {}
    if not isinstance(gates_raw, dict):
        raise BadInput(f"{path}: `gates` must be an object")
    known_gates = {f.name for f in dataclasses.fields(Gates)}
    for key, value in gates_raw.items():
        if key not in known_gates:
            raise BadInput(
                f"{path}: `gates.{key}` is not a known gate (known: {', '.join(sorted(known_gates))})"
            )
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise BadInput(f"{path}: `gates.{key}` must be a number (got {value!r})")
    try:
        gates = Gates(**{k: type(getattr(Gates(), k))(v) for k, v in gates_raw.items()})
    except BadInput as bad:
        raise BadInput(f"{path}: {bad}") from None
    smoke_raw = raw.get("smoke_checks")
    smoke = DEFAULT_SMOKE_CHECKS if smoke_raw is None else _smoke_checks(path, smoke_raw)
    ready_path = raw.get("ready_path", DEFAULT_READY_PATH)
    if not isinstance(ready_path, str) or not _READY_PATH.fullmatch(ready_path):
        raise BadInput(f"{path}: `ready_path` must be a path starting with / (got {ready_path!r:.60})")
    return EnvConfig(
        name=name,
        path=path,
        router=sections["router"],
        deployer=sections["deployer"],
        lock=sections["lock"],
        history=sections["history"],
        state=sections.get("state", {}),
        analysis=dict(analysis),
        colors={color: dict(colors[color]) for color in COLORS},
        endpoints=endpoints,
        gates=gates,
        smoke_checks=smoke,
        aws=dict(aws),
        traffic_meter=dict(meter),
        ready_path=ready_path,
    )
