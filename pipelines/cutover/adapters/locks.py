"""Locks: one operation per environment, as a lease that a background thread renews.

Both backends share the lease logic (LeaseLock) and differ only in where the lease lives:
a DynamoDB item written with conditional puts, or a JSON file guarded by flock.
An expired lease can be taken over; `force` (cutover's --break-lock) takes any lease.

The lease is renewed only while the operation shows progress (`ensure_held` is its
heartbeat, called at every step, poll and deploy line): an operation stuck for
`stuck_after` seconds stops renewing, so its lease runs out and on-call is not locked out
by a process that will never finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from cutover import retry
from cutover.model import BadInput
from cutover.ports import LockHeld, LockLost
from cutover.retry import RetryPolicy


class LeaseLock:
    """The lease protocol; subclasses store it (`_try_put`, `_renew`, `_delete`, `holder`)."""

    def __init__(
        self,
        lease_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        stuck_after: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` (wall time) dates the stored lease; `monotonic` measures the operation's
        silence. Tests inject both, and call `renew_once` instead of waiting for the renewer."""
        self.lease_seconds = lease_seconds
        self.stuck_after = stuck_after if stuck_after is not None else max(600.0, 10 * lease_seconds)
        self._clock = clock
        self._monotonic = monotonic
        self._beat = 0.0  # the operation's last sign of progress
        self._confirmed = 0.0  # when the stored lease was last seen to be ours
        self._token: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, owner: str, operation: str, *, force: bool = False) -> None:
        token = uuid.uuid4().hex
        now = self._clock()
        lease = {
            "owner": owner,
            "operation": operation,
            "token": token,
            "acquired_at": now,
            "expires_at": now + self.lease_seconds,
        }
        if not self._try_put(lease, now, force):
            holder = self.holder() or {"owner": "?", "operation": "?"}
            raise LockHeld(holder)
        self._token, self._lost = token, None
        self._beat = self._confirmed = self._monotonic()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="cutover-lock-renewer", daemon=True)
        self._renewer.start()

    def ensure_held(self, *, fresh: bool = False) -> None:
        """Raise LockLost unless the lease is ours; a heartbeat for the renewer.

        `fresh` reads the stored lease (at most once a second) instead of trusting what the
        renewer saw last: called right before every change, so an operation whose lock
        on-call broke stops before it writes anything."""
        if self._token is None:
            raise LockLost("the lock is not held")
        if self._lost is not None:
            raise LockLost(self._lost)
        self._beat = self._monotonic()
        if fresh and self._monotonic() - self._confirmed > 1.0:
            holder = self.holder()
            if holder is None or holder.get("token") != self._token:
                self._lost = "the lock was taken over by another operation (--break-lock)"
                raise LockLost(self._lost)
            self._confirmed = self._monotonic()

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=1)
        if self._token is not None:
            with contextlib.suppress(Exception):  # an expired or taken-over lease is not ours to delete
                self._delete(self._token)
        self._token = None

    def holder(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            if not self.renew_once():
                return

    def renew_once(self) -> bool:
        """One turn of the renewer: extend the lease, or say why it is lost (False)."""
        token = self._token
        if token is None:
            return False
        silent = self._monotonic() - self._beat
        if silent > self.stuck_after:
            self._lost = f"no progress for {silent:.0f}s: the lease was left to run out"
            return False
        try:
            with retry.deadline(self.lease_seconds / 3):
                renewed = self._renew(token, self._clock() + self.lease_seconds)
        except Exception as exc:  # cannot renew: by the time the lease ends, it is lost
            self._lost = f"could not renew the lease: {exc}"
            return False
        if not renewed:
            self._lost = "the lease was taken over by another operation"
        return renewed

    def _try_put(self, lease: dict[str, Any], now: float, force: bool) -> bool:
        raise NotImplementedError

    def _renew(self, token: str, expires_at: float) -> bool:
        raise NotImplementedError

    def _delete(self, token: str) -> None:
        raise NotImplementedError


class DynamoDBLock(LeaseLock):
    """Item `{lock_id: <env>, owner, operation, token, acquired_at, expires_at}`; the table's
    TTL attribute is `expires_at`, so an abandoned lease also disappears on its own."""

    def __init__(
        self, client: Any, table: str, env: str, *, retry: RetryPolicy | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.client, self.table, self.key = client, table, {"lock_id": {"S": env}}
        self.retry = retry or RetryPolicy()

    def _call(self, what: str, method: Any, **kwargs: Any) -> Any:
        try:
            return self.retry.call(what, method, TableName=self.table, **kwargs)
        except ClientError as exc:
            missing_table(exc, self.table, "lock.table")
            raise

    def holder(self) -> dict[str, Any] | None:
        item = self._call("reading the lock", self.client.get_item, Key=self.key, ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        lease: dict[str, Any] = {}
        for key, value in item.items():
            if key != "lock_id":
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    lease[key] = value["S"] if "S" in value else float(value["N"])
        return _with_expiry(lease, self._clock())

    def _try_put(self, lease: dict[str, Any], now: float, force: bool) -> bool:
        item = {**self.key, **{k: _attr(v) for k, v in lease.items()}}
        condition: dict[str, Any] = {}
        if not force:
            condition = {
                # a lease without an expiry (written by hand, or half) is no lease
                "ConditionExpression": "attribute_not_exists(lock_id) OR attribute_not_exists(expires_at) "
                "OR expires_at < :now",
                "ExpressionAttributeValues": {":now": _attr(now)},
            }
        try:
            self._call("taking the lock", self.client.put_item, Item=item, **condition)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _renew(self, token: str, expires_at: float) -> bool:
        try:
            self._call(
                "renewing the lock",
                self.client.update_item,
                Key=self.key,
                UpdateExpression="SET expires_at = :e",
                ConditionExpression="#t = :t",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":e": _attr(expires_at), ":t": {"S": token}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _delete(self, token: str) -> None:
        self._call(
            "releasing the lock",
            self.client.delete_item,
            Key=self.key,
            ConditionExpression="#t = :t",
            ExpressionAttributeNames={"#t": "token"},
            ExpressionAttributeValues={":t": {"S": token}},
        )


def _with_expiry(lease: dict[str, Any], now: float) -> dict[str, Any]:
    """The lease with `expired`; one without a numeric expiry counts as expired."""
    expires = lease.get("expires_at")
    if not isinstance(expires, int | float):
        lease["expires_at"] = 0.0
    lease["expired"] = lease["expires_at"] < now
    return lease


def missing_table(exc: ClientError, table: str, key: str) -> None:
    """A table that does not exist is a wrong environment file: exit 2, naming the key."""
    if exc.response["Error"]["Code"] == "ResourceNotFoundException":
        raise BadInput(
            f"DynamoDB table {table!r} (`{key}` in the environment file) does not exist in this "
            "account and region: fix the name, or run `pulumi up` for this environment"
        ) from None


def _attr(value: Any) -> dict[str, str]:
    if isinstance(value, int | float | Decimal):
        return {"N": str(value)}
    return {"S": str(value)}


@contextlib.contextmanager
def flocked(path: Path) -> Iterator[Any]:
    """`path` open for reading and writing (created if missing) under an exclusive flock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class FileLock(LeaseLock):
    """The lease as a JSON file; every read-modify-write happens under flock."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)

    def _locked(self) -> contextlib.AbstractContextManager[Any]:
        return flocked(self.path)

    @staticmethod
    def _read(handle: Any) -> dict[str, Any] | None:
        handle.seek(0)
        text = handle.read().strip()
        try:
            lease = json.loads(text) if text else None
        except json.JSONDecodeError:
            return {"owner": "?", "operation": "?", "token": "", "expires_at": 0.0}  # unreadable: expired
        return lease if isinstance(lease, dict) else None

    @staticmethod
    def _write(handle: Any, lease: dict[str, Any] | None) -> None:
        handle.seek(0)
        handle.truncate()
        if lease is not None:
            handle.write(json.dumps(lease))
        handle.flush()
        os.fsync(handle.fileno())

    def holder(self) -> dict[str, Any] | None:
        with self._locked() as handle:
            lease = self._read(handle)
        return _with_expiry(lease, self._clock()) if lease is not None else None

    def _try_put(self, lease: dict[str, Any], now: float, force: bool) -> bool:
        with self._locked() as handle:
            current = self._read(handle)
            if current is not None and _with_expiry(current, now)["expires_at"] >= now and not force:
                return False
            self._write(handle, lease)
        return True

    def _renew(self, token: str, expires_at: float) -> bool:
        with self._locked() as handle:
            current = self._read(handle)
            if current is None or current["token"] != token:
                return False
            current["expires_at"] = expires_at
            self._write(handle, current)
        return True

    def _delete(self, token: str) -> None:
        with self._locked() as handle:
            current = self._read(handle)
            if current is not None and current["token"] == token:
                self._write(handle, None)
