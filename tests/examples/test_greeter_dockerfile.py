"""examples/greeter/Dockerfile: slim, non-root, healthchecked on /livez, clean under checkov and hadolint."""

from __future__ import annotations

from tests.examples.conftest import GREETER_DIR
from tests.tools import checkov, hadolint

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
    findings, code = hadolint(DOCKERFILE)
    assert findings == [] and code == 0, findings
