"""docs/getting-started.md works as written: its `pulumi config set` commands, replayed the
way the Pulumi CLI stores them, give a stack the program builds (under mocks) without a
policy violation; the names the guide uses (stack outputs, the registry URN, the cluster,
the ECR repository) are the ones the program declares; the teardown it documents passes
the pack."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.infra.harness import Run, run_program

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "getting-started.md"
STACK = "sandbox"
# What the guide's shell substitutions produce on a real machine.
SUBSTITUTIONS = {
    "$(curl -s https://checkip.amazonaws.com)": "198.51.100.7",
    "$DIGEST": "sha256:" + "a" * 64,
}


def shell_lines() -> list[str]:
    """Every command line of the guide's ```sh blocks (continuations joined)."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line:
                lines.append(line)
    return lines


def _typed(value: str) -> Any:
    """`--path` values as the CLI stores them: true/false booleans, integers numbers."""
    if value in ("true", "false"):
        return value == "true"
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def _set_path(config: dict[str, Any], path: str, value: Any) -> None:
    namespace, _, rest = path.partition(":")
    steps = re.findall(r"[^.\[\]]+|\[\d+\]", rest)
    key = f"{namespace}:{steps[0]}"
    container: Any = config
    wanted: list[Any] = [key, *steps[1:]]
    for step, following in zip(wanted, [*wanted[1:], None], strict=True):
        index = int(step[1:-1]) if isinstance(step, str) and step.startswith("[") else None
        fresh: Any = [] if isinstance(following, str) and following.startswith("[") else {}
        if index is not None:
            while len(container) <= index:
                container.append(None)
            if following is None:
                container[index] = value
            else:
                container[index] = container[index] if container[index] is not None else fresh
                container = container[index]
        elif following is None:
            container[step] = value
        else:
            container = container.setdefault(step, fresh)


def replay(lines: list[str]) -> dict[str, Any]:
    """The stack config after the guide's `pulumi config set` lines, in order."""
    config: dict[str, Any] = {}
    for line in lines:
        for placeholder, value in SUBSTITUTIONS.items():
            line = line.replace(placeholder, value)
        words = shlex.split(line)
        if words[:3] != ["pulumi", "config", "set"]:
            continue
        flags = {w for w in words[3:] if w.startswith("--")}
        key, value = [w for w in words[3:] if not w.startswith("--")]
        assert flags <= {"--path", "--secret"}, line
        if "--path" in flags:
            _set_path(config, key, _typed(value))
        else:
            config[key] = value  # top-level entries are always strings
    return config


def flat(config: dict[str, Any]) -> dict[str, str]:
    """As the engine hands config to the program: objects and lists as JSON."""
    return {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in config.items()}


def stage(lines: list[str], heading: str) -> list[str]:
    """The guide's command lines before the section titled `heading`."""
    text = GUIDE.read_text()
    before = text[: text.index(heading)]
    count = before.count("```sh\n")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)[:count]
    wanted = {ln.split("  #")[0].strip() for b in blocks for ln in b.replace("\\\n", " ").splitlines()}
    return [line for line in lines if line in wanted]


@pytest.fixture(scope="module")
def released() -> Run:
    """The stack as it stands after section 3 (image pushed, pinned by digest)."""
    lines = stage(shell_lines(), "## 4. Look at it")
    return run_program(STACK, flat(replay(lines)), [])


def test_the_guide_sets_every_required_key_and_the_program_builds_it(released: Run) -> None:
    assert released.violations == []
    assert len(released.resources) > 60
    config = replay(shell_lines())
    assert config["cutover:services"]["ledger"]["blueImage"].startswith("v0.1.0@sha256:")
    assert config["cutover:cluster"]["publicAccessCidrs"] == ["198.51.100.7/32"]


def test_the_names_the_guide_uses_are_the_ones_the_program_declares(released: Run) -> None:
    text = GUIDE.read_text()
    (registry,) = released.of_type("cutover:registry:Registry")
    urn = f"urn:pulumi:{STACK}::cutover::cutover:service:BlueGreenService$cutover:registry:Registry::{registry.name}"
    assert f"'{urn}'" in text
    (repository,) = released.of_type("aws:ecr/repository:Repository")
    assert f"--repository-name {repository.inputs['name']} " in text
    (cluster,) = released.of_type("aws:eks/cluster:Cluster")
    assert f"aws eks update-kubeconfig --name {cluster.inputs['name']} " in text
    for output in re.findall(r"pulumi stack output (\w+)", text):
        assert output in released.outputs, output
    assert "mkdir -p .cutover/envs" in text
    snapshot = released.one("aws:rds/instance:Instance").inputs["finalSnapshotIdentifier"]
    assert f"--db-snapshot-identifier {snapshot}" in text


def test_the_documented_teardown_lifts_every_protection_and_passes_the_pack() -> None:
    lines = stage(shell_lines(), "## 6. Tear it down")
    teardown = [line for line in shell_lines() if line.startswith("pulumi config set cutover:teardown")]
    assert teardown, "the guide's teardown sets cutover:teardown"
    run = run_program(STACK, flat(replay([*lines, *teardown])), [])
    assert run.violations == []
    assert not [r for r in run.resources if r.protect]
    db = run.one("aws:rds/instance:Instance").inputs
    assert db["deletionProtection"] is False and db["skipFinalSnapshot"] is False
    assert all(
        not alb.inputs.get("enableDeletionProtection")
        for alb in run.of_type("aws:lb/loadBalancer:LoadBalancer")
    )


def test_the_replay_follows_the_cli_rules() -> None:
    config = replay(
        [
            "pulumi config set --path 'cutover:cluster.access.admins[0]' arn:aws:iam::1:role/a",
            "pulumi config set --path cutover:cluster.endpointPublicAccess false",
            "pulumi config set --path cutover:services.api.drain.drainSeconds 3",
            "pulumi config set cutover:teardown true",
        ]
    )
    assert config == {
        "cutover:cluster": {"access": {"admins": ["arn:aws:iam::1:role/a"]}, "endpointPublicAccess": False},
        "cutover:services": {"api": {"drain": {"drainSeconds": 3}}},
        "cutover:teardown": "true",
    }
