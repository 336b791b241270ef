"""Three real ledger processes on one Postgres: membership, the cross-node feed, rate limits."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from cutover.local.database import migrate_database
from cutover.local.ledger_process import LedgerProcess
from cutover.local.ports import free_port
from cutover.local.postgres import EmbeddedPostgres
from tests.app.conftest import StartLedger, open_account

INTERVAL = 0.5


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def cluster_of(process: LedgerProcess) -> dict[str, Any]:
    return dict(httpx.get(process.url + "/cluster", timeout=5).json())


def peer_ids(process: LedgerProcess) -> set[str]:
    return {peer["id"] for peer in cluster_of(process)["peers"]}


def start_static_cluster(start: StartLedger, size: int = 3, **env: str) -> list[LedgerProcess]:
    ports = [free_port() for _ in range(size)]
    peers = ",".join(f"127.0.0.1:{port}" for port in ports)
    return [
        start(
            port=port,
            CLUSTER_DISCOVERY=f"static:{peers}",
            CLUSTER_INTERVAL_SECONDS=str(INTERVAL),
            INSTANCE_ID=f"node-{'abc'[i]}",
            **env,
        )
        for i, port in enumerate(ports)
    ]


def websocket(process: LedgerProcess) -> ClientConnection:
    return connect(process.url.replace("http://", "ws://") + "/ws/transfers", open_timeout=5)


def receive_all(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    messages = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            messages.append(json.loads(ws.recv(timeout=left)))
        except TimeoutError:
            break
    return messages


def test_three_nodes_see_each_other_share_the_feed_and_notice_a_death(start_ledger: StartLedger) -> None:
    a, b, c = start_static_cluster(start_ledger)
    wait_until(lambda: all(len(peer_ids(p)) == 2 for p in (a, b, c)), 10, "every node sees two peers")
    view = cluster_of(a)
    assert view["self"]["id"] == "node-a" and view["self"]["color"] == "blue"
    assert view["size"] == 3 and view["discovery"]["mode"] == "static"
    assert {p["id"] for p in view["peers"]} == {"node-b", "node-c"}
    assert all(p["ready"] for p in view["peers"])
    assert view["feed"]["degraded"] is False

    with httpx.Client(base_url=c.url) as through_c, websocket(a) as on_a:
        wait_until(lambda: cluster_of(a)["feed"]["subscribers"] == 1, 5, "subscriber registered")
        source, target = open_account(through_c, 100), open_account(through_c, 0)
        made = through_c.post(
            "/transfers",
            json={"from_account_id": source, "to_account_id": target, "amount": 42},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ).json()
        received = receive_all(on_a, 1.5)
    matching = [m for m in received if m["id"] == made["id"]]
    assert len(matching) == 1, received
    assert matching[0]["amount"] == 42 and matching[0]["origin"] == "ledger-blue/node-c"

    c.send_signal(signal.SIGKILL)
    took = wait_until(lambda: peer_ids(a) == {"node-b"}, 5, "node-c leaves a's view")
    assert took <= 2 * INTERVAL + 0.5, took
    assert cluster_of(a)["size"] == 2


def test_feed_delivers_each_transfer_once_in_commit_order(start_ledger: StartLedger) -> None:
    a, b = start_static_cluster(start_ledger, size=2)
    with httpx.Client(base_url=b.url) as through_b, websocket(a) as on_a:
        wait_until(lambda: cluster_of(a)["feed"]["subscribers"] == 1, 5, "subscriber registered")
        source, target = open_account(through_b, 10_000), open_account(through_b, 0)
        made = [
            through_b.post(
                "/transfers",
                json={"from_account_id": source, "to_account_id": target, "amount": n},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            ).json()["id"]
            for n in range(1, 31)
        ]
        received = [m["id"] for m in receive_all(on_a, 1.5)]
    assert received == made
    assert cluster_of(a)["feed"]["delivered"] >= len(made)  # notifications a's LISTEN connection got


def test_websocket_limit_per_client_refuses_with_1008(start_ledger: StartLedger) -> None:
    process = start_ledger(WS_MAX_PER_CLIENT="2")
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(websocket(process))
        stack.enter_context(websocket(process))
        with websocket(process) as third, pytest.raises(ConnectionClosed) as closed:
            third.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert "too many websocket connections" in closed.value.rcvd.reason
        first.close()
        wait_until(lambda: cluster_of(process)["feed"]["subscribers"] == 1, 5, "first socket released")
        with websocket(process) as again, pytest.raises(TimeoutError):
            again.recv(timeout=0.3)  # accepted and open: nothing to read yet


def test_feed_degrades_when_postgres_goes_and_recovers(own_postgres: EmbeddedPostgres, tmp_path: Any) -> None:
    migrate_database(own_postgres.url())
    process = LedgerProcess(
        {"DATABASE_URL": own_postgres.url(), "READY_CACHE_SECONDS": "0.2"}, tmp_path / "ledger.log"
    ).start()
    try:
        assert cluster_of(process)["feed"]["degraded"] is False
        own_postgres.stop("immediate")
        wait_until(lambda: cluster_of(process)["feed"]["degraded"] is True, 10, "feed marked degraded")
        assert "ledger_feed_connected 0.0" in httpx.get(process.url + "/metrics").text
        own_postgres.start()
        wait_until(lambda: cluster_of(process)["feed"]["degraded"] is False, 15, "feed reconnected")
        metrics = httpx.get(process.url + "/metrics").text
        assert "ledger_feed_connected 1.0" in metrics and "ledger_feed_reconnects_total 1.0" in metrics
        process.wait_for_status("/health/ready", 200, 10)
        with httpx.Client(base_url=process.url) as http, websocket(process) as ws:
            wait_until(lambda: cluster_of(process)["feed"]["subscribers"] == 1, 5, "subscriber registered")
            source, target = open_account(http, 5), open_account(http, 0)
            made = http.post(
                "/transfers",
                json={"from_account_id": source, "to_account_id": target, "amount": 5},
                headers={"Idempotency-Key": "after-recovery"},
            ).json()
            assert [m["id"] for m in receive_all(ws, 1.0)] == [made["id"]]
    finally:
        process.kill()


def test_rate_limit_is_shared_across_the_cluster(start_ledger: StartLedger) -> None:
    limit = 30
    nodes = start_static_cluster(start_ledger, RATE_LIMIT_PER_MINUTE=str(limit), TRUSTED_PROXIES="127.0.0.1")
    wait_until(
        lambda: all("ledger_cluster_size 3.0" in httpx.get(p.url + "/metrics").text for p in nodes),
        10,
        "every node counts three",
    )
    # The test runner is a trusted proxy here, so each test below is a distinct client.
    client = {"X-Forwarded-For": "203.0.113.7"}
    statuses: list[int] = []
    retry_after: set[str] = set()
    for i in range(3 * limit):
        answer = httpx.get(nodes[i % 3].url + "/openapi.json", headers=client)
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            retry_after.add(answer.headers["retry-after"])
            assert answer.json()["error"]["code"] == "rate_limited"
            assert answer.headers["x-served-by"].startswith("blue/node-")
    allowed = statuses.count(200)
    assert set(statuses) == {200, 429}
    assert limit - 3 <= allowed <= limit + 3, allowed
    assert retry_after and all(int(v) >= 1 for v in retry_after)
    other = httpx.get(nodes[0].url + "/openapi.json", headers={"X-Forwarded-For": "198.51.100.1"})
    assert other.status_code == 200  # another client has its own bucket
    for node in nodes:  # health and metrics are never limited
        for _ in range(limit):
            assert httpx.get(node.url + "/health/ready", headers=client).status_code == 200
        assert "ledger_rate_limited_total" in httpx.get(node.url + "/metrics", headers=client).text
