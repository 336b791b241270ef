"""CI workflows: schema-valid, clean under checkov, actionlint and zizmor, and shaped as the runbooks promise."""

from __future__ import annotations

import json
import re
import shutil
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


def venv_tool(name: str) -> str:
    """A linter the dev extra installs next to this interpreter (`make install`)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: run `make install` (pyproject.toml's dev extra)"
    return str(path)


def actionlint(repository: Path) -> subprocess.CompletedProcess[str]:
    """actionlint over a repository's .github/workflows (it reads called workflows from there too)."""
    files = sorted(
        str(p.relative_to(repository)) for p in (repository / ".github" / "workflows").glob("*.yml")
    )
    return subprocess.run(
        [
            venv_tool("actionlint"),
            "-no-color",
            "-oneline",
            "-shellcheck",
            venv_tool("shellcheck"),
            "-pyflakes",
            "",
            *files,
        ],
        cwd=repository,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_actionlint_reports_nothing() -> None:
    result = actionlint(ROOT)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result.stdout + result.stderr


def copy_of_the_workflows(tmp_path: Path, edit: tuple[str, str, str]) -> Path:
    """A git repository holding the workflows, with `edit` = (file, old, new) applied once."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    workflows = tmp_path / ".github" / "workflows"
    shutil.copytree(INSTALLED, workflows)
    name, old, new = edit
    text = (workflows / name).read_text()
    assert old in text, f"{name} no longer holds {old!r}: update this test"
    (workflows / name).write_text(text.replace(old, new, 1))
    return tmp_path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("release.yml", "id-token: write # the called job", "id-token: none # the called job"),
            'requires "id-token: write" but the calling job grants "id-token: none"',
        ),
        (
            (
                "rollback.yml",
                "actions/checkout@" + "3d3c42e5aac5ba805825da76410c181273ba90b1",
                "actions/checkout@v4",
            ),
            'runtime "node20" is deprecated',
        ),
    ],
    ids=["caller-withholds-id-token", "node20-action"],
)
def test_actionlint_catches_what_made_the_release_unrunnable(
    tmp_path: Path, edit: tuple[str, str, str], expected: str
) -> None:
    result = actionlint(copy_of_the_workflows(tmp_path, edit))
    assert result.returncode == 1 and expected in result.stdout, result.stdout + result.stderr


def test_zizmor_reports_nothing_at_its_default_persona() -> None:
    result = subprocess.run(
        # --offline: no network here; the audits that need GitHub's API are left out.
        [
            venv_tool("zizmor"),
            "--offline",
            "--no-progress",
            "--format",
            "json",
            *map(str, sorted(INSTALLED.glob("*.yml"))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout)
    assert [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in findings] == []
    assert result.returncode == 0, result.stderr
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if match := re.search(r"zizmor: ignore\[[^\]]+\](.*)", line):
                assert len(match.group(1).strip(" :-")) > 20, f"{path.name}: {line.strip()} needs its reason"


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
    assert "staging" in release["jobs"]["prod"]["needs"]
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


# The policy pack, refresh, the image digest, permissions of called workflows, action pins.

GOOD_DIGEST = "sha256:" + "ab" * 32


def job_steps(path: Path, job: str) -> list[dict[str, Any]]:
    return list(load(path)["jobs"][job]["steps"])


def pulumi_command(step: dict[str, Any]) -> tuple[str, bool, bool] | None:
    """(command, runs the policy pack, refreshes first) of a step that runs Pulumi, else None."""
    if step.get("uses", "").startswith("pulumi/actions@"):
        with_ = step.get("with", {})
        packs = str(with_.get("policyPacks", "")).split()
        return with_["command"], "infra/policy" in packs, str(with_.get("refresh")).lower() == "true"
    match = re.search(r"\bpulumi (up|update|preview|destroy|refresh)\b(.*)", step.get("run", ""))
    if match:
        flags = match.group(2)
        return match.group(1), "--policy-pack infra/policy" in flags, "--refresh" in flags
    return None


@pytest.mark.parametrize(
    ("path", "job"), [(SOURCE / "pr.yml", "preview"), (SOURCE / "release-environment.yml", "release")]
)
def test_the_policy_pack_runs_on_a_preview_before_anything_can_change(path: Path, job: str) -> None:
    commands = [c for c in map(pulumi_command, job_steps(path, job)) if c]
    assert commands, path.name
    first, with_pack, _ = commands[0]
    assert (first, with_pack) == ("preview", True), f"{path.name}: the first Pulumi step is a policy preview"
    assert all(pack for _, pack, _ in commands), f"{path.name}: every Pulumi step runs infra/policy"


def test_every_pulumi_up_in_ci_refreshes_first() -> None:
    ups = [
        (path.name, c)
        for path in WORKFLOWS
        for _, step in steps(load(path))
        if (c := pulumi_command(step)) and c[0] in ("up", "update")
    ]
    assert [name for name, _ in ups] == ["release-environment.yml"]
    assert all(refresh for _, (_, _, refresh) in ups)
    release = job_steps(SOURCE / "release-environment.yml", "release")
    up = next(i for i, s in enumerate(release) if (pulumi_command(s) or ("",))[0] == "up")
    cutover = next(i for i, s in enumerate(release) if "cutover release" in s.get("run", ""))
    assert up < cutover


def test_build_pushes_app_dockerfile_to_ecr_with_attestations_and_outputs_the_digest() -> None:
    build = load(SOURCE / "build.yml")
    assert set(build["on"]) == {"workflow_call"}
    assert build["on"]["workflow_call"]["outputs"]["image"]["value"] == "${{ jobs.build.outputs.image }}"
    job = build["jobs"]["build"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["concurrency"]["cancel-in-progress"] is False
    assert job["outputs"]["image"] == "${{ steps.image.outputs.image }}"
    uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    order = [
        "aws-actions/configure-aws-credentials",
        "aws-actions/amazon-ecr-login",
        "docker/build-push-action",
    ]
    assert [u for u in uses if u in order] == order
    push = next(s for s in job["steps"] if s.get("id") == "push")
    assert push["uses"].startswith("docker/build-push-action@")
    assert {k: push["with"][k] for k in ("context", "file", "push", "sbom")} == {
        "context": "app",
        "file": "app/Dockerfile",
        "push": True,
        "sbom": True,
    }
    assert push["with"]["provenance"] == "mode=max"
    assert push["with"]["tags"] == "${{ steps.tags.outputs.tags }}"
    tags = next(s for s in job["steps"] if s.get("id") == "tags")
    assert tags["env"]["REGISTRY"] == "${{ steps.ecr.outputs.registry }}"
    image = next(s for s in job["steps"] if s.get("id") == "image")
    assert image["env"] == {"DIGEST": "${{ steps.push.outputs.digest }}"}


def run_build_step(tmp_path: Path, step_id: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A `run` step of build.yml, run by bash as the runner runs it (`bash -e`)."""
    step = next(s for s in job_steps(SOURCE / "build.yml", "build") if s.get("id") == step_id)
    out = tmp_path / "github_output"
    out.write_text("")
    env = {"PATH": "/usr/bin:/bin", "TAG": "v1.4.2", "GITHUB_OUTPUT": str(out), **env}
    return subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True)


def test_the_image_step_outputs_tag_at_digest(tmp_path: Path) -> None:
    result = run_build_step(tmp_path, "image", DIGEST=GOOD_DIGEST)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "github_output").read_text() == f"image=v1.4.2@{GOOD_DIGEST}\n"


def test_the_image_step_fails_without_a_digest(tmp_path: Path) -> None:
    result = run_build_step(tmp_path, "image", DIGEST="")
    assert result.returncode != 0
    assert (tmp_path / "github_output").read_text() == ""


def test_one_build_is_tagged_in_every_environment_repository(tmp_path: Path) -> None:
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    repositories = "cutover/staging/ledger cutover/prod/ledger"
    result = run_build_step(tmp_path, "tags", REGISTRY=registry, REPOSITORIES=repositories)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "github_output").read_text() == (
        "tags<<END_OF_TAGS\n"
        f"{registry}/cutover/staging/ledger:v1.4.2\n"
        f"{registry}/cutover/prod/ledger:v1.4.2\n"
        "END_OF_TAGS\n"
    )
    unset = run_build_step(tmp_path, "tags", REGISTRY=registry, REPOSITORIES="")
    assert unset.returncode != 0 and "ECR_REPOSITORIES" in unset.stdout


def test_each_environment_releases_the_built_digest_not_the_tag() -> None:
    release = load(SOURCE / "release.yml")
    jobs = release["jobs"]
    assert jobs["build"]["uses"] == "./.github/workflows/build.yml"
    assert jobs["build"]["needs"] == "test"
    for env in ("staging", "prod"):
        assert "build" in jobs[env]["needs"]  # `needs.build` is only visible to direct dependents
        assert jobs[env]["with"]["image"] == "${{ needs.build.outputs.image }}"
    environment = load(SOURCE / "release-environment.yml")
    assert environment["on"]["workflow_call"]["inputs"]["image"]["required"] is True
    job = environment["jobs"]["release"]
    assert job["env"]["IMAGE"] == "${{ inputs.image }}"
    assert "github.ref_name" not in (SOURCE / "release-environment.yml").read_text()
    (release_step,) = [s for s in job["steps"] if "cutover release" in s.get("run", "")]
    assert '--image "$IMAGE"' in release_step["run"]


LEVEL = {"none": 0, "read": 1, "write": 2}


def called_workflow(job: dict[str, Any]) -> Path | None:
    """The workflow file a job calls in this repository (`$/...` or `./...`), else None."""
    match = re.fullmatch(r"(?:\$|\.)/\.github/workflows/(.+\.yml)", str(job.get("uses", "")))
    return SOURCE / match.group(1) if match else None


def granted(document: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    permissions = job.get("permissions", document.get("permissions", {}))
    return dict(permissions)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_called_workflows_get_every_permission_their_jobs_ask_for(path: Path) -> None:
    document = load(path)
    for name, job in document["jobs"].items():
        if (called_path := called_workflow(job)) is None:
            continue
        caller = granted(document, job)
        called = load(called_path)
        for called_name, called_job in called["jobs"].items():
            for scope, level in granted(called, called_job).items():
                assert LEVEL[caller.get(scope, "none")] >= LEVEL[level], (
                    f"{path.name}: job {name} must grant {scope}: {level} for {called_name}"
                )


def needed(job: dict[str, Any]) -> dict[str, str]:
    """The permissions a job's own steps (or the workflow it calls) use, and no more."""
    if (called_path := called_workflow(job)) is not None:
        called = load(called_path)
        union: dict[str, str] = {}
        for called_job in called["jobs"].values():
            for scope, level in granted(called, called_job).items():
                union[scope] = max(union.get(scope, "none"), level, key=LEVEL.__getitem__)
        return union
    uses = [step.get("uses", "") for step in job.get("steps", [])]
    need = {}
    if any(u.startswith("actions/checkout@") for u in uses):
        need["contents"] = "read"
    if any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses):
        need["id-token"] = "write"  # OIDC: the job assumes an AWS role
    return need


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_nothing_is_granted_by_default_and_each_job_only_what_it_uses(path: Path) -> None:
    document = load(path)
    assert document["permissions"] == {}, f"{path.name}: set `permissions: {{}}` at the top"
    for name, job in document["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} declares its own permissions"
        assert job["permissions"] == needed(job), f"{path.name}: job {name}"


def test_called_workflows_get_the_secrets_they_declare_and_no_others() -> None:
    calls = [
        (path, name, job)
        for path in WORKFLOWS
        for name, job in load(path)["jobs"].items()
        if called_workflow(job)
    ]
    assert len(calls) == 3  # build, staging, prod
    for path, name, job in calls:
        called_path = called_workflow(job)
        assert called_path is not None
        declared = load(called_path)["on"]["workflow_call"].get("secrets", {})
        used = set(re.findall(r"\bsecrets\.([A-Za-z0-9_]+)", called_path.read_text()))
        assert used <= set(declared), f"{called_path.name} declares every secret it reads"
        passed = job.get("secrets", {})
        assert passed != "inherit", f"{path.name}: job {name} names the secrets it passes"
        assert set(passed) == set(declared), f"{path.name}: job {name} passes exactly {sorted(declared)}"
        for secret, value in passed.items():
            assert value == f"${{{{ secrets.{secret} }}}}"


# Each action, reviewed: the latest release of the first major that runs on node24 (node20
# leaves GitHub's runners on 2026-09-23), resolved from the action's repository to the commit
# its tag names; that commit's action.yml says `using: node24`. Bump a pin here and in the
# workflows together, with the new tag's commit.
REVIEWED = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),
    "aws-actions/amazon-ecr-login": ("03f1aad4c6c7ffd436567f42f9384779290529bd", "v2.1.7"),
    "docker/setup-buildx-action": ("37fe631027851001ddb9b187196cc803df7f5f0e", "v4.3.0"),
    "docker/build-push-action": ("53b7df96c91f9c12dcc8a07bcb9ccacbed38856a", "v7.3.0"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
}
# The first major of each action that runs on node24, from its action.yml at that tag.
NODE24_FROM = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "aws-actions/configure-aws-credentials": 6,
    "aws-actions/amazon-ecr-login": 2,
    "docker/setup-buildx-action": 4,
    "docker/build-push-action": 7,
    "pulumi/actions": 7,
}


def pins(path: Path) -> list[tuple[str, str, str]]:
    """(action, ref, version comment) of each `uses:` of an action in a workflow's text."""
    found = re.findall(r"^\s*(?:- )?uses:\s*([^\s@]+)@(\S+)[ \t]*(?:#[ \t]*(\S*))?", path.read_text(), re.M)
    return [(action, ref, comment) for action, ref, comment in found if not action.startswith(("$/", "./"))]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_the_commit_of_a_reviewed_node24_release(path: Path) -> None:
    uses = [s["uses"] for _, s in steps(load(path)) if "uses" in s and not s["uses"].startswith(("$/", "./"))]
    assert len(pins(path)) == len(uses), (
        f"{path.name}: every `uses:` is on one line: owner/name@<sha> # vX.Y.Z"
    )
    for action, ref, comment in pins(path):
        assert action in REVIEWED, f"{path.name}: {action} is not reviewed for its node runtime"
        assert re.fullmatch(r"[0-9a-f]{40}", ref), (
            f"{path.name}: pin {action} to a full commit SHA, not {ref}"
        )
        assert (ref, comment) == REVIEWED[action], (
            f"{path.name}: {action}@{ref} # {comment} is not the reviewed pin"
        )
        assert int(comment[1:].split(".")[0]) >= NODE24_FROM[action], (
            f"{path.name}: {action} {comment} runs on node20"
        )
