"""Canary analysis end to end: a build that passes readiness and smoke checks but fails a
share of its requests is caught on metrics during the bake, and the release ends restored.

Real parts: ledger processes (the local deployer), Postgres, a real Prometheus (Debian's
package) scraping both colors every second, the `cutover` subprocess against a strict moto
server. The bad build is bad the way a real one is: its database lacks the `transfers`
table (a migration it expects never ran), so it is ready (the database answers) and every
POST /transfers is a 500."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from cutover.local.database import migrate_database
from cutover.local.postgres import EmbeddedPostgres
from tests.pipelines.cli_env import Env, cutover
from tests.pipelines.metrics_fixtures import INSTALL, PROMETHEUS, PrometheusServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _traffic(base: str, stop: threading.Event, seen: dict[int, int]) -> None:
    """Users on one color, until stopped (at most 90 s): open accounts, move money."""
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=base, timeout=3.0) as client:
        accounts: list[str] = []
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if len(accounts) < 2 or len(accounts) % 3 == 0:
                    answer = client.post(
                        "/accounts", json={"name": "u", "currency": "EUR", "opening_balance": 10_000}
                    )
                    if answer.status_code == 201:
                        accounts.append(str(answer.json()["id"]))
                else:
                    answer = client.post(
                        "/transfers",
                        json={"from_account_id": accounts[0], "to_account_id": accounts[1], "amount": 1},
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                    accounts.append(accounts[-1])  # so that one in three opens an account
                seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            except httpx.HTTPError:
                time.sleep(0.2)  # not up yet (green before its deploy)
            time.sleep(0.02)


def _requests_in_window(prometheus: PrometheusServer, color: str, seconds: int) -> float:
    found = prometheus.query(f'sum(increase(ledger_http_requests_total{{color="{color}"}}[{seconds}s]))')
    return float(found[0]["value"][1]) if found else 0.0  # type: ignore[index]


@pytest.fixture
def prometheus(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"{PROMETHEUS} is missing: install Debian's prometheus package ({INSTALL})")
    ports = env.spec["deployer"]["ports"]
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), {c: f"127.0.0.1:{ports[c][0]}" for c in ("blue", "green")}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_canary_failing_a_share_of_its_requests_is_restored_on_metrics(
    env: Env, postgres: EmbeddedPostgres, prometheus: PrometheusServer
) -> None:
    bad = f"bad_{uuid.uuid4().hex[:8]}"
    bad_url = postgres.create_database(bad)
    migrate_database(bad_url)
    postgres.psql("DROP TABLE transfers CASCADE", database=bad)
    spec = env.spec
    spec["deployer"]["image_env"] = {"v2-bad-schema": {"DATABASE_URL": bad_url}}
    spec["gates"].update(health_interval=1.0)
    spec["analysis"] = {
        "type": "prometheus",
        "url": prometheus.url,
        "window_seconds": 15,
        "min_requests": 20,
        "max_error_rate_increase": 0.01,
    }
    env.write_spec(spec)
    stop = threading.Event()
    seen: dict[str, dict[int, int]] = {"blue": {}, "green": {}}
    users = [
        threading.Thread(
            target=_traffic, args=(env.spec["colors"][c]["endpoint"], stop, seen[c]), daemon=True
        )
        for c in ("blue", "green")
    ]
    for user in users:
        user.start()
    # The comparison needs the stable color's requests in Prometheus first (a series exists
    # from its first request, a rate from its second scrape): wait for them, not a guess.
    deadline = time.monotonic() + 30
    while not _requests_in_window(prometheus, "blue", 15) >= 20:
        assert time.monotonic() < deadline, f"blue's requests never reached Prometheus: {seen}"
        time.sleep(0.2)
    try:
        released = cutover(
            env,
            "release",
            "--image",
            "v2-bad-schema",
            "--strategy",
            "canary:10,100",
            "--bake",
            "60",
            "--json",
            timeout=180,
        )
    finally:
        stop.set()
        for user in users:
            user.join(10)
    outcome = json.loads(released.stdout)
    assert "seconds" in outcome, released.stderr
    print(
        f"\nanalysis-driven restore: {outcome['reason']} after {outcome['seconds']:.1f}s; clients saw {seen}"
    )
    assert released.returncode == 1, released.stderr
    assert outcome["outcome"] == "failed" and outcome["after"]["blue"] == 100
    assert outcome["reason"].startswith("canary analysis: green 5xx share")
    assert "vs blue 0.0%" in outcome["reason"] and "> 1.0 allowed" in outcome["reason"]
    assert env.weights() == {"blue": 100, "green": 0}
    assert seen["green"].get(500, 0) > 0 and seen["blue"].get(500, 0) == 0
    latest = next(r for r in env.history() if r["operation"] == "release")
    assert latest["details"]["analysis"][-1]["passed"] is False
