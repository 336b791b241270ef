"""TrafficRouter on Route53: two weighted alias records and a generation TXT record.

Every change is one change batch that DELETEs the exact records as last read (weights and
generation included) and CREATEs the new ones. Route53 applies a batch atomically and
rejects a DELETE that does not match the live record, so a concurrent writer makes our
batch fail (ConcurrentChange) instead of being silently overwritten.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from cutover.model import COLORS, BadInput, Color, Traffic
from cutover.ports import ConcurrentChange
from cutover.retry import RetryPolicy

_GENERATION_PREFIX = "cutover-generation="


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


class Route53Router:
    def __init__(
        self,
        client: Any,
        hosted_zone_id: str,
        record_name: str,
        *,
        generation_record: str | None = None,
        set_identifiers: dict[Color, str] | None = None,
        record_type: str = "A",
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.zone = hosted_zone_id
        self.name = _fqdn(record_name)
        self.generation_name = _fqdn(generation_record or f"_cutover.{record_name}")
        self.set_ids: dict[Color, str] = set_identifiers or {"blue": "blue", "green": "green"}
        self.record_type = record_type
        self.retry = retry or RetryPolicy(sleep=sleep)
        self._sleep = sleep
        self._records: dict[Color, dict[str, Any]] = {}
        self._generation_record: dict[str, Any] | None = None
        self._known: Traffic | None = None  # the traffic that _records and _generation_record show
        self._change_id: str | None = None

    # -- reading -----------------------------------------------------------------

    def read(self) -> Traffic:
        records = self._list(self.name)
        weighted = {
            r.get("SetIdentifier"): r
            for r in records
            if r["Name"] == self.name and r["Type"] == self.record_type
        }
        found: dict[Color, dict[str, Any]] = {}
        for color in COLORS:
            record = weighted.get(self.set_ids[color])
            if record is None or "Weight" not in record:
                raise BadInput(
                    f"Route53 zone {self.zone} has no weighted {self.record_type} record {self.name} with set "
                    f"identifier {self.set_ids[color]!r}: run `pulumi up` for this environment first"
                )
            found[color] = record
        # Route53 lists names with their labels reversed, so `_cutover.<name>` usually comes
        # in the same page as `<name>`: one call instead of two on the rollback path.
        generation_record = _find_txt(records, self.generation_name) or _find_txt(
            self._list(self.generation_name), self.generation_name
        )
        if generation_record is None:
            raise BadInput(
                f"Route53 zone {self.zone} has no TXT record {self.generation_name} (the traffic generation)"
            )
        self._records, self._generation_record = found, generation_record
        weights = {color: int(found[color]["Weight"]) for color in COLORS}
        # Route53 weights are relative (0-255): kept as they are, never rounded, so a hand
        # edit shows as what it is and the next change DELETEs exactly what is live.
        self._known = Traffic(weights["blue"], weights["green"], _parse_generation(generation_record))
        return self._known

    def _list(self, name: str) -> list[dict[str, Any]]:
        try:
            answer = self._call(
                "reading the weighted records",
                self.client.list_resource_record_sets,
                HostedZoneId=self.zone,
                StartRecordName=name,
                MaxItems="20",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchHostedZone", "InvalidInput"):
                raise BadInput(
                    f"Route53 has no hosted zone {self.zone!r} (`router.hosted_zone_id` in the environment "
                    f"file): {exc.response['Error'].get('Message', '')}; fix the id, or run `pulumi up`"
                ) from None
            raise
        return list(answer["ResourceRecordSets"])

    # -- writing -----------------------------------------------------------------

    def change_batch(self, target: Traffic, expected: Traffic) -> dict[str, Any]:
        """The one batch that moves the records from `expected` to `target` (pure, for tests)."""
        if self._known is None or self._generation_record is None:
            self.read()
        assert self._generation_record is not None
        exact = self._known == expected  # then DELETE the records byte for byte as read
        changes: list[dict[str, Any]] = []
        for color in COLORS:
            current = copy.deepcopy(self._records[color])
            if not exact:
                current["Weight"] = expected.weight(color)
            new = copy.deepcopy(current)
            new["Weight"] = target.weight(color)
            changes += [
                {"Action": "DELETE", "ResourceRecordSet": current},
                {"Action": "CREATE", "ResourceRecordSet": new},
            ]
        old_generation = copy.deepcopy(self._generation_record)
        if not exact:
            old_generation["ResourceRecords"] = [{"Value": _generation_value(expected.generation)}]
        new_generation = copy.deepcopy(old_generation)
        new_generation["ResourceRecords"] = [{"Value": _generation_value(expected.generation + 1)}]
        changes += [
            {"Action": "DELETE", "ResourceRecordSet": old_generation},
            {"Action": "CREATE", "ResourceRecordSet": new_generation},
        ]
        return {"Comment": f"cutover: {expected} -> {target}", "Changes": changes}

    def set(self, target: Traffic, expected: Traffic) -> Traffic:
        batch = self.change_batch(target, expected)
        try:
            answer = self._call(
                "changing the weighted records",
                self.client.change_resource_record_sets,
                ambiguous=False,  # a change is sent twice only when AWS said it did not apply
                HostedZoneId=self.zone,
                ChangeBatch=batch,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "InvalidChangeBatch":
                raise ConcurrentChange(
                    f"Route53 records changed since they were read ({exc.response['Error'].get('Message', '')})"
                ) from exc
            raise
        self._change_id = answer["ChangeInfo"]["Id"]
        applied = Traffic(target.blue, target.green, expected.generation + 1)
        self._records = {
            color: batch["Changes"][2 * i + 1]["ResourceRecordSet"] for i, color in enumerate(COLORS)
        }
        self._generation_record = batch["Changes"][-1]["ResourceRecordSet"]
        self._known = applied
        return applied

    def wait_in_sync(self, timeout: float) -> float:
        """Poll GetChange with a bounded backoff until INSYNC."""
        if self._change_id is None:
            return 0.0
        started = time.monotonic()
        delay = 0.25
        while True:
            status = self._call("waiting for INSYNC", self.client.get_change, Id=self._change_id)[
                "ChangeInfo"
            ]["Status"]
            if status == "INSYNC":
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"Route53 change {self._change_id} not INSYNC after {timeout:g}s")
            self._sleep(delay)
            delay = min(delay * 2, 5.0)

    def _call(self, what: str, method: Any, *, ambiguous: bool = True, **kwargs: Any) -> Any:
        """Call the API through the one retry policy (bounded in time, reported)."""
        return self.retry.call(f"Route53 {what}", method, ambiguous=ambiguous, **kwargs)


def _find_txt(records: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((r for r in records if r["Name"] == name and r["Type"] == "TXT"), None)


def _generation_value(generation: int) -> str:
    return f'"{_GENERATION_PREFIX}{generation}"'


def _parse_generation(record: dict[str, Any]) -> int:
    values = [r["Value"].strip('"') for r in record.get("ResourceRecords", [])]
    for value in values:
        if value.startswith(_GENERATION_PREFIX) and value[len(_GENERATION_PREFIX) :].isdigit():
            return int(value[len(_GENERATION_PREFIX) :])
    raise BadInput(f"TXT record {record['Name']} does not hold {_GENERATION_PREFIX}<n> (found {values})")
