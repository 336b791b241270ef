"""Login values the chart must refuse at render time, not leave to a crash-looping pod."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.charts.helpers import BASE_VALUES, by_kind, merged, render
from tests.charts.test_database_auth import APP_URL, IAM, OWNER_URL, PASSWORD_FILE


@pytest.mark.parametrize("mode", ["iam", "password-file"])
def test_a_pod_url_without_a_user_is_refused_naming_database_url(mode: str) -> None:
    """ledger refuses to start in these modes without the user (an IAM token and a password
    belong to one role): before, the chart rendered it and the pods crash-looped."""
    values = merged(BASE_VALUES, IAM if mode == "iam" else PASSWORD_FILE, {"database": {"url": OWNER_URL}})
    with pytest.raises(helm_python.HelmError) as error:
        render(values)
    assert f"database.url must name the user when database.auth is {mode}" in str(error.value)


@pytest.mark.parametrize(
    "url", [APP_URL, "postgresql://db.internal:5432/ledger?sslmode=require&user=ledger_app"]
)
def test_a_user_in_the_url_or_its_query_is_accepted(url: str) -> None:
    (deployment,) = by_kind(render(merged(BASE_VALUES, IAM, {"database": {"url": url}})), "Deployment")
    env: dict[str, Any] = {
        e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["DATABASE_URL"] == url
