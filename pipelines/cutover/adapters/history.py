"""History: an audit record of every release, shift and rollback (JSON lines or DynamoDB)."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from cutover.adapters.locks import missing_table
from cutover.ports import Record
from cutover.retry import RetryPolicy


def _to_json(record: Record) -> str:
    return json.dumps(record.to_dict(), sort_keys=True)


def _from_json(text: str) -> Record:
    return Record.from_dict(json.loads(text))


class FileHistory:
    """Appends one JSON line per write; a record written again (same id) supersedes itself."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, record: Record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(_to_json(record) + "\n")
            handle.flush()

    def recent(self, limit: int = 20) -> list[Record]:
        if not self.path.exists():
            return []
        latest: dict[str, Record] = {}
        for line in self.path.read_text().splitlines():
            if line.strip():
                record = _from_json(line)
                latest[record.id] = record
        return sorted(latest.values(), key=lambda r: r.started_at, reverse=True)[:limit]


class DynamoDBHistory:
    """Items keyed by `env` (partition) and `sort_key` = start time + id, newest read first."""

    def __init__(self, client: Any, table: str, env: str, retry: RetryPolicy | None = None) -> None:
        self.client, self.table, self.env = client, table, env
        self.retry = retry or RetryPolicy()

    def _call(self, what: str, method: Any, **kwargs: Any) -> Any:
        try:
            return self.retry.call(what, method, TableName=self.table, **kwargs)
        except ClientError as exc:
            missing_table(exc, self.table, "history.table")
            raise

    def write(self, record: Record) -> None:
        self._call(
            "writing history",
            self.client.put_item,
            Item={
                "env": {"S": self.env},
                "sort_key": {"S": f"{record.started_at:017.6f}#{record.id}"},
                "operation": {"S": record.operation},
                "outcome": {"S": record.outcome},
                "record": {"S": _to_json(record)},
            },
        )

    def recent(self, limit: int = 20) -> list[Record]:
        answer = self._call(
            "reading history",
            self.client.query,
            KeyConditionExpression="env = :env",
            ExpressionAttributeValues={":env": {"S": self.env}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [_from_json(item["record"]["S"]) for item in answer.get("Items", [])]
