"""The process's moving state: the pool, the start-up sequence and the drain flag."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from ledger.cluster import Cluster, DnsSource, PeerSource, StaticSource
from ledger.config import Settings
from ledger.credentials import CredentialsError, credentials_for
from ledger.errors import ServiceUnavailable
from ledger.feed import TransferFeed
from ledger.health import DatabasePing
from ledger.metrics import Metrics
from ledger.migrate import expected_version, schema_version
from ledger.store import LedgerStore
from ledger.tasks import cancel_and_wait

log = logging.getLogger("ledger.runtime")

_RETRY_MIN, _RETRY_MAX = 0.25, 5.0


def peer_source(settings: Settings) -> PeerSource | None:
    """The discovery strategy CLUSTER_DISCOVERY names, or None when the instance is alone."""
    discovery = settings.discovery
    if discovery.mode == "dns":
        return DnsSource(discovery.dns_name, settings.port, settings.cluster_dns_server)
    if discovery.mode == "static":
        return StaticSource(discovery.static_peers)
    return None


def server_settings(settings: Settings) -> dict[str, str]:
    """Session settings for pooled connections: a name, and the statement timeout (0 = none)."""
    values = {"application_name": f"ledger-{settings.served_by}"}
    if settings.db_statement_timeout_seconds > 0:
        values["statement_timeout"] = str(max(1, round(settings.db_statement_timeout_seconds * 1000)))
    return values


async def reset_if_in_transaction(conn: asyncpg.Connection) -> None:
    """Pool release hook: skip asyncpg's full reset round trip when nothing needs resetting.

    ledger never changes session state on pooled connections (no SET, LISTEN, advisory
    locks or cursors: those use dedicated connections), so only a transaction left open
    by a cancelled request needs cleaning up.
    """
    if conn.is_in_transaction():
        await conn.reset()


class Runtime:
    """Owns the database pool and knows whether the process is started, ready or draining."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.pool: asyncpg.Pool | None = None
        self._store: LedgerStore | None = None
        self.started = False
        self.draining = False
        self.startup_failure = "starting"
        self.schema_expected = expected_version()
        self.db_ping = DatabasePing(
            self._ping,
            timeout=settings.db_ping_timeout_seconds,
            cache_seconds=settings.ready_cache_seconds,
        )
        self._start_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expired_at = float("-inf")
        self._background: set[asyncio.Future[None]] = set()
        self.drain_started = asyncio.Event()
        self.cluster = Cluster(
            peer_source(settings),
            settings.served_by,
            settings.cluster_interval_seconds,
            on_change=self.metrics.cluster_size.set,
        )
        # DATABASE_AUTH: every new connection (pool, feed) asks it for a current password.
        self.credentials = credentials_for(settings)
        self.feed = TransferFeed(
            settings.database_url,
            f"ledger-{settings.served_by}-feed",
            on_state=lambda connected: self.metrics.feed_connected.set(1 if connected else 0),
            on_reconnect=self.metrics.feed_reconnects.inc,
            connect=self.credentials.connect,
        )

    @property
    def store(self) -> LedgerStore:
        """The data store; raises 503 while the service is still starting."""
        if self._store is None:
            raise ServiceUnavailable("the service is starting; retry shortly", headers={"Retry-After": "1"})
        return self._store

    def start(self) -> None:
        """Connect in the background: the process answers probes while it waits for Postgres."""
        self._loop = asyncio.get_running_loop()
        self._start_task = self._loop.create_task(self._connect_until_started())
        self.feed.start()
        self.cluster.start()

    async def stop(self, close_within: float = 5.0) -> None:
        """Stop starting, then close the pool, waiting at most `close_within` seconds."""
        await cancel_and_wait(self._start_task)
        await self.cluster.stop()
        await self.feed.stop()
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), close_within)
            except TimeoutError:
                log.warning("database pool did not close in %ss; terminating it", close_within)
                self.pool.terminate()
            log.info("database pool closed")

    def begin_drain(self) -> None:
        """Readiness turns 503 from now on; the process keeps serving. Websockets are told
        to go (1001). Safe to call from a signal handler."""
        if not self.draining:
            self.draining = True
            self.metrics.draining.set(1)
            self.metrics.ready.set(0)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.drain_started.set)

    def database_down(self) -> None:
        """A request lost its connection: replace every pooled connection (at most once a second)."""
        now = time.monotonic()
        if self.pool is None or now - self._expired_at < 1.0:
            return
        if now - self.credentials.last_refused_at < self.settings.database_auth_retry_seconds + 1:
            # The database answers but refuses new logins (a password rotation not yet in the
            # file): the open connections are the ones that still work. Keep them.
            return
        self._expired_at = now
        self._background.add(task := asyncio.ensure_future(self.pool.expire_connections()))
        task.add_done_callback(self._background.discard)

    async def readiness_failure(self) -> str | None:
        """None when ready for traffic, else the reason it is not."""
        if self.draining:
            return "draining"
        if not self.started:
            return self.startup_failure
        failure = await self.db_ping.failure()
        self.metrics.ready.set(0 if failure else 1)
        if failure:
            self.database_down()
        return failure

    def _pool_stats(self) -> tuple[int, int, int] | None:
        if self.pool is None:
            return None
        idle = self.pool.get_idle_size()
        return self.pool.get_size() - idle, idle, self.pool.get_max_size()

    async def _ping(self) -> None:
        assert self.pool is not None
        async with self.pool.acquire(timeout=self.settings.db_ping_timeout_seconds) as conn:
            await conn.fetchval("SELECT 1")

    async def _connect_until_started(self) -> None:
        delay = _RETRY_MIN
        while not self.started:
            try:
                if self.pool is None:
                    self.pool = await asyncpg.create_pool(
                        self.settings.database_url,
                        min_size=self.settings.db_pool_min,
                        max_size=self.settings.db_pool_max,
                        # Connections are replaced over time (after so many queries, or
                        # idle), so new ones pick up a rotated password or a new token.
                        max_queries=self.settings.db_pool_max_queries,
                        max_inactive_connection_lifetime=self.settings.db_pool_max_inactive_seconds,
                        connect=self.credentials.connect,
                        timeout=5,
                        # Client side: a query with no answer (a hung server or network) ends
                        # in TimeoutError, answered 503. Server side: statement_timeout.
                        command_timeout=self.settings.db_command_timeout_seconds,
                        server_settings=server_settings(self.settings),
                        reset=reset_if_in_transaction,
                    )
                    self.metrics.watch_pool(self._pool_stats)
                async with self.pool.acquire() as conn:
                    version = await schema_version(conn)  # type: ignore[arg-type]
                if version < self.schema_expected:
                    self.startup_failure = (
                        f"schema is at version {version}, this release needs "
                        f"{self.schema_expected}: run `ledger migrate`"
                    )
                else:
                    self._store = LedgerStore(
                        self.pool,
                        self.metrics.count_transfer,
                        acquire_timeout=self.settings.db_acquire_timeout_seconds,
                    )
                    self.started = True
                    self.startup_failure = ""
                    log.info("started", extra={"schema_version": version})
                    return
            except CredentialsError as exc:
                self.startup_failure = f"database login failed: {exc.message}"
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.startup_failure = f"database unreachable: {type(exc).__name__}"
            log.warning("not started yet, retrying in %.2fs: %s", delay, self.startup_failure)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)
