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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover.adapters.http_health import DEFAULT_SMOKE_CHECKS, SmokeCheck
from cutover.machine import Gates
from cutover.model import COLORS, BadInput, Color

ADAPTER_TYPES = {
    "router": ("route53", "envoy"),
    "deployer": ("pulumi", "local"),
    "lock": ("dynamodb", "file"),
    "history": ("dynamodb", "file"),
}


@dataclass(frozen=True)
class EnvConfig:
    name: str
    path: Path
    router: dict[str, Any]
    deployer: dict[str, Any]
    lock: dict[str, Any]
    history: dict[str, Any]
    endpoints: dict[Color, str]
    gates: Gates = field(default_factory=Gates)
    smoke_checks: tuple[SmokeCheck, ...] = DEFAULT_SMOKE_CHECKS
    aws: dict[str, Any] = field(default_factory=dict)


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


def parse(raw: dict[str, Any], path: Path) -> EnvConfig:
    sections = {}
    for section, types in ADAPTER_TYPES.items():
        value = raw.get(section)
        if not isinstance(value, dict) or value.get("type") not in types:
            raise BadInput(f"{path}: `{section}.type` must be one of {', '.join(types)}")
        sections[section] = value
    colors = raw.get("colors")
    if not isinstance(colors, dict):
        raise BadInput(f'{path}: `colors` must map blue and green to {{"endpoint": URL}}')
    endpoints: dict[Color, str] = {}
    for color in COLORS:
        endpoint = (colors.get(color) or {}).get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise BadInput(f"{path}: `colors.{color}.endpoint` must be an http(s) URL")
        endpoints[color] = endpoint
    gates_raw = raw.get("gates") or {}
    try:
        gates = Gates(**{k: type(getattr(Gates(), k))(v) for k, v in gates_raw.items()})
    except (TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"{path}: `gates` has an unknown key or a bad value ({exc})") from None
    smoke_raw = raw.get("smoke_checks")
    smoke: tuple[SmokeCheck, ...] = DEFAULT_SMOKE_CHECKS
    if smoke_raw is not None:
        try:
            smoke = tuple(SmokeCheck(**check) for check in smoke_raw)
        except TypeError as exc:
            raise BadInput(
                f"{path}: `smoke_checks` entries take name, path, method, expect_status, expect_body ({exc})"
            ) from None
    return EnvConfig(
        name=str(raw.get("name") or path.stem),
        path=path,
        router=sections["router"],
        deployer=sections["deployer"],
        lock=sections["lock"],
        history=sections["history"],
        endpoints=endpoints,
        gates=gates,
        smoke_checks=smoke,
        aws=dict(raw.get("aws") or {}),
    )
