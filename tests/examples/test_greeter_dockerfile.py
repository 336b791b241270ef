"""examples/greeter/Dockerfile: slim, non-root, healthchecked on /livez, clean under checkov and hadolint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.examples.conftest import GREETER_DIR
from tests.tools import checkov

DOCKERFILE = GREETER_DIR / "Dockerfile"


def _final_stage() -> list[str]:
    lines = DOCKERFILE.read_text().splitlines()
    start = max(index for index, line in enumerate(lines) if line.startswith("FROM "))
    return lines[start:]


def test_final_stage_is_pinned_slim_non_root_and_runs_python_m_greeter() -> None:
    final = _final_stage()
    assert final[0].startswith("FROM python:3.11.") and "-slim-" in final[0]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    text = "\n".join(final)
    assert "HEALTHCHECK" in text and "/livez" in text and "/readyz" not in text
    assert 'ENTRYPOINT ["python", "-m", "greeter"]' in text  # exec form: SIGTERM reaches greeter
    assert "EXPOSE 9000" in text and "PORT=9000" in text


def test_checkov_dockerfile_checks_all_pass() -> None:
    report = checkov(["-f", str(DOCKERFILE)], "dockerfile")
    assert [check["check_id"] for check in report["results"]["failed_checks"]] == []
    assert report["summary"]["passed"] > 20


def test_hadolint_reports_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: run `make install`"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == [] and result.returncode == 0, result.stdout
