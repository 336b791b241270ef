"""Accounts and transfers in Postgres: the money rules live here.

A transfer locks both account rows in id order (so two transfers over the same pair can
never deadlock), debits, credits and writes its log row in one transaction. The balance
check is also a database constraint, so no code path can make a balance negative.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.errors import (
    AccountNotFound,
    ApiError,
    BalanceOutOfRange,
    CurrencyMismatch,
    DatabaseTimeout,
    DatabaseUnavailable,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    ServiceUnavailable,
    TransferNotFound,
)
from ledger.models import MAX_BALANCE, Account, AccountCreate, Transfer, TransferCreate

# Deadlocks cannot happen with ordered locking, and serialization failures cannot happen
# at READ COMMITTED; both are still retried so that neither can ever reach a client.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_MAX_ATTEMPTS = 5

# The database is down or restarting: errors the driver (or the socket under it) raises
# while the store talks to Postgres. Only these, and only from the store's own calls, become
# DatabaseUnavailable (503, retry, the pool drops its connections): an OSError elsewhere in a
# handler is a bug of ours, a 500.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    ConnectionError,
    OSError,
    TimeoutError,  # asyncpg's command_timeout
)

# statement_timeout (server side) or lock_timeout fired: the database is slow, not gone.
DATABASE_TIMEOUT: tuple[type[BaseException], ...] = (asyncpg.QueryCanceledError,)

# asyncpg.InterfaceError is also raised for misuse (another operation in progress, a bad
# codec): only its "connection/pool is closed" forms mean the database went away.
_CLOSED_MARKERS = ("is closed", "is closing")


def database_failure(exc: BaseException) -> ApiError | None:
    """The 503 a driver error raised by a store call stands for, or None if it is no outage."""
    if isinstance(exc, DATABASE_TIMEOUT):  # before DATABASE_DOWN: QueryCanceledError is a subclass
        return DatabaseTimeout(
            "the database did not answer in time; retry shortly", headers={"Retry-After": "1"}
        )
    lost = isinstance(exc, asyncpg.InterfaceError) and any(m in str(exc) for m in _CLOSED_MARKERS)
    if lost or isinstance(exc, DATABASE_DOWN):
        return DatabaseUnavailable("the database is unavailable; retry shortly", headers={"Retry-After": "1"})
    return None


_TRANSFER_COLUMNS = "id, from_account_id, to_account_id, amount, currency, created_at"


class DatabaseBusy(ServiceUnavailable):
    """No pooled connection came free within the acquire timeout (503, retry)."""

    code = "database_busy"


def request_fingerprint(body: TransferCreate) -> str:
    """A stable hash of what a transfer asks for, to tell a retry from a reused key."""
    text = f"{body.from_account_id}|{body.to_account_id}|{body.amount}"
    return hashlib.sha256(text.encode()).hexdigest()


class LedgerStore:
    """Data access for accounts and transfers over an asyncpg pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        on_outcome: Callable[[str], None] | None = None,
        *,
        acquire_timeout: float = 2.0,
    ):
        self._pool = pool
        self._on_outcome = on_outcome or (lambda _outcome: None)
        self._acquire_timeout = acquire_timeout

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection within the acquire timeout, else DatabaseBusy (503).

        The store's boundary: a driver error that means the database is gone or too slow,
        raised while acquiring, using or releasing the connection, leaves as
        DatabaseUnavailable or DatabaseTimeout; ApiErrors and other errors pass unchanged.
        """
        try:
            try:
                conn = await self._pool.acquire(timeout=self._acquire_timeout)
            except TimeoutError:
                raise DatabaseBusy(
                    "no database connection came free in time; retry shortly", headers={"Retry-After": "1"}
                ) from None
            try:
                yield conn
            finally:
                await self._pool.release(conn)
        except ApiError:
            raise
        except Exception as exc:
            failure = database_failure(exc)
            if failure is None:
                raise
            raise failure from exc

    async def _fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        async with self._connection() as conn:
            return await conn.fetchrow(query, *args)

    async def create_account(self, body: AccountCreate) -> Account:
        row = await self._fetchrow(
            "INSERT INTO accounts (id, name, currency, balance) VALUES ($1, $2, $3, $4) "
            "RETURNING id, name, currency, balance, created_at",
            uuid.uuid4(),
            body.name,
            body.currency,
            body.opening_balance,
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return Account.model_validate(dict(row))

    async def get_account(self, account_id: uuid.UUID) -> Account:
        row = await self._fetchrow(
            "SELECT id, name, currency, balance, created_at FROM accounts WHERE id = $1", account_id
        )
        if row is None:
            raise AccountNotFound(f"account {account_id} does not exist")
        return Account.model_validate(dict(row))

    async def get_transfer(self, transfer_id: uuid.UUID) -> Transfer:
        row = await self._fetchrow(
            f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE id = $1",  # noqa: S608
            transfer_id,
        )
        if row is None:
            raise TransferNotFound(f"transfer {transfer_id} does not exist")
        assert row is not None  # INSERT ... RETURNING always returns the row
        return Transfer.model_validate(dict(row))

    async def create_transfer(self, body: TransferCreate, idempotency_key: str) -> tuple[Transfer, bool]:
        """Commit a transfer, or return the one already committed under this key.

        Returns the transfer and whether it is a replay of an earlier request. The common
        case (a new key) costs no lookup: the unique index on the key detects a replay at
        INSERT time, and a refused transfer checks for an earlier commit before refusing.
        """
        if body.from_account_id == body.to_account_id:
            raise InvalidRequest("from_account_id and to_account_id must differ")
        fingerprint = request_fingerprint(body)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                transfer = await self._commit_transfer(body, idempotency_key, fingerprint)
            except asyncpg.UniqueViolationError:
                # This key committed before (or concurrently, and won): answer as it did.
                replay = await self._replay(idempotency_key, fingerprint)
                if replay is None:
                    raise
                return replay, True
            except asyncpg.CheckViolationError:
                # The database constraint caught a balance going negative.
                return await self._refuse(
                    InsufficientFunds("the source account has insufficient funds"),
                    idempotency_key,
                    fingerprint,
                )
            except asyncpg.NumericValueOutOfRangeError:
                # Belt and braces: the check in _commit_transfer refuses this first.
                return await self._refuse(_out_of_range(body.to_account_id), idempotency_key, fingerprint)
            except (AccountNotFound, CurrencyMismatch, InsufficientFunds, BalanceOutOfRange) as refusal:
                return await self._refuse(refusal, idempotency_key, fingerprint)
            except _RETRYABLE:
                if attempt == _MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
                continue
            self._on_outcome("committed")
            return transfer, False
        raise AssertionError("unreachable")  # pragma: no cover

    async def _refuse(
        self, refusal: ApiError, idempotency_key: str, fingerprint: str
    ) -> tuple[Transfer, bool]:
        """Refuse, unless this key already committed (a retry after the money moved)."""
        replay = await self._replay(idempotency_key, fingerprint)
        if replay is not None:
            return replay, True
        self._on_outcome(refusal.code)
        raise refusal

    async def _replay(self, idempotency_key: str, fingerprint: str) -> Transfer | None:
        row = await self._fetchrow(
            f"SELECT {_TRANSFER_COLUMNS}, request_hash FROM transfers WHERE idempotency_key = $1",  # noqa: S608
            idempotency_key,
        )
        if row is None:
            return None
        if row["request_hash"] != fingerprint:
            self._on_outcome("idempotency_conflict")
            raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
        self._on_outcome("replayed")
        return Transfer.model_validate({k: row[k] for k in Transfer.model_fields})

    async def _commit_transfer(self, body: TransferCreate, key: str, fingerprint: str) -> Transfer:
        source, target, amount = body.from_account_id, body.to_account_id, body.amount
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, currency, balance FROM accounts WHERE id = ANY($1::uuid[]) "
                "ORDER BY id FOR NO KEY UPDATE",
                [source, target],
            )
            accounts = {row["id"]: row for row in rows}
            for account_id in (source, target):
                if account_id not in accounts:
                    raise AccountNotFound(f"account {account_id} does not exist")
            currency = accounts[source]["currency"]
            if accounts[target]["currency"] != currency:
                raise CurrencyMismatch(
                    f"cannot move {currency} into a {accounts[target]['currency']} account"
                )
            if accounts[source]["balance"] < amount:
                raise InsufficientFunds(
                    f"account {source} holds {accounts[source]['balance']}, the transfer needs {amount}"
                )
            if accounts[target]["balance"] > MAX_BALANCE - amount:
                raise _out_of_range(target)
            await conn.execute(
                "UPDATE accounts SET balance = balance + CASE WHEN id = $1 THEN -$3::bigint "
                "ELSE $3::bigint END WHERE id IN ($1, $2)",
                source,
                target,
                amount,
            )
            row = await conn.fetchrow(
                "INSERT INTO transfers (id, idempotency_key, request_hash, from_account_id, "  # noqa: S608
                "to_account_id, amount, currency) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                f"RETURNING {_TRANSFER_COLUMNS}",
                uuid.uuid4(),
                key,
                fingerprint,
                source,
                target,
                amount,
                currency,
            )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return Transfer.model_validate(dict(row))


def _out_of_range(account_id: uuid.UUID) -> BalanceOutOfRange:
    return BalanceOutOfRange(
        f"the transfer would take account {account_id} past the largest balance ({MAX_BALANCE}); nothing moved"
    )
