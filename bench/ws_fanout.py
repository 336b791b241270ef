"""Websocket fan-out latency: a transfer committed through instance A, delivered on B."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass

import httpx
from websockets.asyncio.client import connect

from bench.harness import Server
from cutover.local.ports import free_port

TRANSFERS = 1000


@dataclass(frozen=True)
class Result:
    after_ack_ms: list[float]  # delivery on B minus A's 201: a lower bound (can be < 0)
    after_send_ms: list[float]  # delivery on B minus the POST to A: an upper bound

    @staticmethod
    def percentile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(a_url: str, b_url: str) -> Result:
    delivered: dict[str, float] = {}
    async with (
        connect(b_url.replace("http://", "ws://") + "/ws/transfers") as ws,
        httpx.AsyncClient() as http,
    ):

        async def read() -> None:
            async for message in ws:
                delivered[json.loads(message)["id"]] = time.perf_counter()

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.2)
        accounts = []
        for balance in (10**9, 0):
            answer = await http.post(
                a_url + "/accounts", json={"name": "bench", "currency": "EUR", "opening_balance": balance}
            )
            accounts.append(answer.json()["id"])
        sent: dict[str, tuple[float, float]] = {}
        for _ in range(TRANSFERS):
            started = time.perf_counter()
            answer = await http.post(
                a_url + "/transfers",
                json={"from_account_id": accounts[0], "to_account_id": accounts[1], "amount": 1},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            sent[answer.json()["id"]] = (started, time.perf_counter())
        deadline = time.perf_counter() + 5
        while len(delivered) < TRANSFERS and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        reader.cancel()
    missing = set(sent) - set(delivered)
    if missing:
        raise RuntimeError(f"{len(missing)} transfers never reached the other instance")
    return Result(
        [(delivered[i] - ack) * 1000 for i, (_, ack) in sent.items()],
        [(delivered[i] - start) * 1000 for i, (start, _) in sent.items()],
    )


def run(database_url: str) -> Result:
    ports = [free_port(), free_port()]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    servers = []
    try:
        for port, name in zip(ports, ("a", "b"), strict=True):
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "HOST": "127.0.0.1",
                "INSTANCE_ID": name,
                "CLUSTER_DISCOVERY": f"static:{peers}",
                "LOG_LEVEL": "WARNING",
                "DRAIN_SECONDS": "0",
            }
            servers.append(
                Server([sys.executable, "-m", "ledger", "serve"], env, port=port).wait_ready("/health/ready")
            )
        return asyncio.run(_measure(servers[0].url, servers[1].url))
    finally:
        for server in servers:
            server.stop()
