"""The live transfer feed: Postgres LISTEN/NOTIFY in, websocket subscribers out.

A trigger on `transfers` (migration 0002) calls pg_notify in the committing transaction,
so a notification exists only for a committed transfer, and Postgres delivers
notifications to every listening session in commit order. Each ledger instance holds one
dedicated LISTEN connection and fans each notification out to its local subscribers, so
every subscriber on every instance sees every transfer once.

When the LISTEN connection drops, the feed is marked degraded (in /cluster and /metrics)
and reconnects with capped exponential backoff. Transfers committed while it was down are
not replayed on the feed: clients that need every transfer read `GET /transfers/{id}`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ledger.tasks import cancel_and_wait

log = logging.getLogger("ledger.feed")

CHANNEL = "ledger_transfers"
SUBSCRIBER_QUEUE = 1024  # a subscriber this far behind is disconnected (1013)
_KEEPALIVE_SECONDS = 2.0
_BACKOFF_MIN, _BACKOFF_MAX = 0.2, 5.0


class Subscriber:
    """One websocket's queue of JSON payloads. `overflowed` once it fell too far behind."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.overflowed = asyncio.Event()

    def offer(self, payload: str) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.overflowed.set()


class TransferFeed:
    """Keeps one LISTEN connection alive and fans notifications out to subscribers."""

    def __init__(
        self,
        database_url: str,
        application_name: str,
        *,
        on_state: Callable[[bool], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        connect: Callable[..., Awaitable[asyncpg.Connection]] | None = None,
    ) -> None:
        self._database_url = database_url
        self._connect: Callable[..., Awaitable[Any]] = connect or asyncpg.connect
        self._application_name = application_name
        self._subscribers: set[Subscriber] = set()
        self._on_state = on_state or (lambda _connected: None)
        self._on_reconnect = on_reconnect or (lambda: None)
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.last_error = "not connected yet"
        self.delivered = 0

    @property
    def degraded(self) -> bool:
        return not self.connected

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.delivered += 1
        text = str(payload)
        for subscriber in self._subscribers:
            subscriber.offer(text)

    def _set_connected(self, connected: bool, error: str = "") -> None:
        if connected != self.connected:
            log.log(
                logging.INFO if connected else logging.WARNING,
                "transfer feed connected" if connected else "transfer feed degraded",
                extra={"error": error} if error else None,
            )
        self.connected = connected
        self.last_error = error
        self._on_state(connected)

    async def _run(self) -> None:
        delay = _BACKOFF_MIN
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect(
                    self._database_url,
                    timeout=5,
                    server_settings={"application_name": self._application_name},
                )
                await conn.add_listener(CHANNEL, self._on_notification)
                if not first:
                    self._on_reconnect()
                first = False
                self._set_connected(True)
                delay = _BACKOFF_MIN
                while True:  # a cheap query notices a dead connection that sent no FIN
                    await asyncio.sleep(_KEEPALIVE_SECONDS)
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), _KEEPALIVE_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: degraded, back off, reconnect
                self._set_connected(False, f"{type(exc).__name__}")
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, _BACKOFF_MAX)
