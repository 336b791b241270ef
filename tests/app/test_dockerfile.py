"""app/Dockerfile: multi-stage, non-root, healthchecked, and clean under checkov and hadolint."""

from __future__ import annotations

import re
from pathlib import Path

from tests.tools import checkov, hadolint

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "app" / "Dockerfile"


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_final_stage_is_slim_non_root_and_healthchecked() -> None:
    stages = _stages()
    assert len(stages) >= 2, "multi-stage build expected"
    final = "\n".join(stages[-1])
    assert "slim" in stages[-1][0]
    assert "build-essential" not in final and "gcc" not in final
    user_lines = [line for line in stages[-1] if line.startswith("USER ")]
    assert user_lines and user_lines[-1].split()[1].split(":")[0] not in ("0", "root")
    assert "HEALTHCHECK" in final and "/health/live" in final
    assert 'ENTRYPOINT ["ledger"]' in final and 'CMD ["serve"]' in final


def test_checkov_dockerfile_checks_all_pass() -> None:
    report = checkov(["-f", str(DOCKERFILE)], "dockerfile")
    failed = [c["check_id"] for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 20


def test_hadolint_reports_nothing() -> None:
    findings, code = hadolint(DOCKERFILE)
    assert [(f["code"], f["line"], f["message"]) for f in findings] == []
    assert code == 0
    for line in DOCKERFILE.read_text().splitlines():
        if match := re.search(r"hadolint ignore=([A-Z0-9,]+)(.*)", line):
            assert len(match.group(2).strip(" :-")) > 20, f"{line.strip()} needs its reason"
