"""CI workflows: schema-valid, clean under checkov, and shaped as the runbooks promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import checkov

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "pipelines" / "ci"
INSTALLED = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(SOURCE.glob("*.yml"))


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on:` as True
    return dict(document)


def test_installed_workflows_are_the_ones_in_pipelines_ci() -> None:
    assert [p.name for p in WORKFLOWS] == sorted(p.name for p in INSTALLED.glob("*.yml"))
    for path in WORKFLOWS:
        assert (INSTALLED / path.name).read_text() == path.read_text(), (
            f"copy pipelines/ci/{path.name} to .github/workflows/"
        )


def test_workflows_match_the_github_workflow_schema() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_github_actions_checks_pass_and_every_skip_has_a_reason() -> None:
    report = checkov(["-d", str(INSTALLED)], "github_actions")
    assert report["summary"]["failed"] == 0, report["results"].get("failed_checks")
    assert report["summary"]["passed"] > 50
    for path in WORKFLOWS:
        for skip in re.findall(r"checkov:skip=([A-Z0-9_]+):?(.*)", path.read_text()):
            assert len(skip[1].strip()) > 20, f"{path.name}: skip {skip[0]} needs its reason"


def steps(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in document["jobs"].items() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_aws_only_through_oidc_and_no_expression_inside_run(path: Path) -> None:
    text = path.read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "aws-secret-access-key" not in text
    document = load(path)
    for job_name, step in steps(document):
        if "configure-aws-credentials" in step.get("uses", ""):
            assert document["jobs"][job_name]["permissions"]["id-token"] == "write"
            assert "role-to-assume" in step["with"]
        # Untrusted values reach shell steps through env, never spliced into the script.
        assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}"


def test_releases_run_one_at_a_time_per_environment_with_prod_behind_approval() -> None:
    release = load(SOURCE / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["jobs"]["prod"]["needs"] == "staging"
    assert [release["jobs"][e]["with"]["environment"] for e in ("staging", "prod")] == ["staging", "prod"]
    job = load(SOURCE / "release-environment.yml")["jobs"]["release"]
    assert job["environment"] == "${{ inputs.environment }}"  # prod's required reviewers apply
    assert job["concurrency"] == {"group": "cutover-${{ inputs.environment }}", "cancel-in-progress": False}
    assert any("cutover release" in step.get("run", "") for step in job["steps"])
    rollback = load(SOURCE / "rollback.yml")
    assert rollback["on"]["workflow_dispatch"]["inputs"]["environment"]["options"] == ["staging", "prod"]
    assert any("cutover rollback" in step.get("run", "") for _, step in steps(rollback))
    pr = load(SOURCE / "pr.yml")
    assert any(step.get("run") == "make test" for _, step in steps(pr))
    assert any(step.get("with", {}).get("command") == "preview" for _, step in steps(pr))


def test_the_rollback_workflow_needs_aws_credentials_alone() -> None:
    rollback = load(SOURCE / "rollback.yml")
    runs = [step.get("run", "") for _, step in steps(rollback)]
    assert "python -m pip install --quiet ." in runs  # the slim install, not `make install`
    assert not any("make install" in run or "[dev]" in run for run in runs)
    assert not any("pulumi" in step.get("uses", "") + step.get("run", "") for _, step in steps(rollback))
    assert not any("PULUMI" in key for key in rollback["jobs"]["rollback"].get("env", {}))
    assert any("aws ssm get-parameter" in run and "/cutover/$CUTOVER_ENV/cutover-env" in run for run in runs)
