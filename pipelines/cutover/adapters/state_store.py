"""Where the release state lives: an item in the DynamoDB lock table, or a JSON file.

Both write with compare-and-swap on the state's `version`, so two machines never write
over each other's state (see cutover.release_state).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from cutover.adapters.locks import flocked, missing_table
from cutover.model import BadInput
from cutover.release_state import ReleaseState, StateConflict
from cutover.retry import RetryPolicy


class FileStateStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _locked(self) -> contextlib.AbstractContextManager[Any]:
        return flocked(self.path)

    @staticmethod
    def _read(handle: Any) -> ReleaseState:
        handle.seek(0)
        text = handle.read().strip()
        return ReleaseState.from_dict(json.loads(text)) if text else ReleaseState()

    def load(self) -> ReleaseState:
        if not self.path.exists():
            return ReleaseState()
        with self._locked() as handle:
            handle.seek(0)
            text = handle.read().strip()
            return _parse(text, str(self.path)) if text else ReleaseState()

    def save(self, state: ReleaseState) -> ReleaseState:
        with self._locked() as handle:
            stored = self._read(handle)
            if stored.version != state.version:
                raise StateConflict(f"release state is at version {stored.version}, not {state.version}")
            saved = dataclasses.replace(state, version=state.version + 1)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(saved.as_dict(), sort_keys=True))
            handle.flush()
            os.fsync(handle.fileno())
        return saved


class DynamoDBStateStore:
    """Item `{lock_id: "<env>#release-state", version, state}` in the lock table: the table
    cutover already owns per environment; the item has no `expires_at`, so TTL keeps it."""

    def __init__(
        self,
        client: Any,
        table: str,
        env: str,
        retry: RetryPolicy | None = None,
        *,
        setting: str = "lock.table",
    ) -> None:
        self.client, self.table, self.setting = client, table, setting
        self.key = {"lock_id": {"S": f"{env}#release-state"}}
        self.retry = retry or RetryPolicy()

    def _call(self, what: str, method: Any, **kwargs: Any) -> Any:
        try:
            return self.retry.call(what, method, TableName=self.table, **kwargs)
        except ClientError as exc:
            missing_table(exc, self.table, self.setting)
            raise

    def load(self) -> ReleaseState:
        answer = self._call(
            "reading the release state", self.client.get_item, Key=self.key, ConsistentRead=True
        )
        item = answer.get("Item")
        if not item:
            return ReleaseState()
        return _parse(
            item.get("state", {}).get("S", ""), f"item {self.key['lock_id']['S']} of table {self.table}"
        )

    def save(self, state: ReleaseState) -> ReleaseState:
        saved = dataclasses.replace(state, version=state.version + 1)
        if state.version == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(lock_id)"}
        else:
            condition = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(state.version)}},
            }
        try:
            self._call(
                "writing the release state",
                self.client.put_item,
                Item={
                    **self.key,
                    "version": {"N": str(saved.version)},
                    "state": {"S": json.dumps(saved.as_dict(), sort_keys=True)},
                },
                **condition,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StateConflict(f"release state changed since version {state.version}") from exc
            raise
        return saved


def _parse(text: str, where: str) -> ReleaseState:
    """A state that cannot be read is refused with the fix, never guessed at."""
    try:
        return ReleaseState.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadInput(
            f"the release state ({where}) is unreadable ({type(exc).__name__}: {exc}): delete it, and "
            "the next operation records the environment afresh from its live traffic"
        ) from None
