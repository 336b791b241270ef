"""moto's Route53, made to reject change batches the way real Route53 does.

CLOUD-FACTS: cutover's compare-and-swap (docs/decisions/0004-route53-compare-and-swap.md)
depends on two facts about real Route53:

- A DELETE must match the live record exactly (name, type, set identifier, weight, alias
  target, or TTL and values); otherwise the whole batch fails with `InvalidChangeBatch`
  (HTTP 400), "Tried to delete resource record set [...] but the values provided do not
  match the current values", and nothing in it is applied.
- A batch applies atomically and in order: DELETE a record then CREATE it again with new
  values is the classic atomic swap, while a CREATE of a record that still exists at that
  point fails ("Tried to create resource record set [...] but it already exists").

moto (5.2) does not compare a DELETE with the live record: it ignores weight and alias
target, and accepts any TTL and values it has ever journaled for that name and type (so a
stale generation record deletes fine). It also applies a batch change by change (a bad
name in the second change leaves the first applied), deletes every record with a DELETE's
set identifier whatever its name, and refuses a CREATE it has journaled before even when
the same batch deletes the record first (see tests/pipelines/moto_quirks.py). A test double
that accepts a stale DELETE proves nothing about the compare-and-swap, so `make_strict()`
and `strict()` replace `Route53Backend.change_resource_record_sets` in this process:
every moto Route53 backend, under `mock_aws` or behind a `ThreadedMotoServer` started in
this process, then validates the whole batch against the live records (both sides
normalised: weights and TTLs as numbers, `EvaluateTargetHealth` as a bool, names without
case or trailing dot) and only then applies it, under a lock, in one step.

    with strict():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
        server.start()
        ...  # boto3 against the server sees real Route53's rules
        server.stop()
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moto.route53 import models
from moto.route53.exceptions import (
    DnsNameInvalidForZone,
    InvalidActionValue,
    InvalidInput,
    Route53ClientError,
)
from moto.route53.utils import validate_domain_name

__all__ = ["ChangeBatchRejected", "is_strict", "make_strict", "strict"]

_METHOD = "change_resource_record_sets"
_ACTIONS = ("CREATE", "DELETE", "UPSERT")
_LOCK = threading.RLock()  # one batch at a time per process, as Route53 serialises a zone's changes


class ChangeBatchRejected(Route53ClientError):
    """Route53's `InvalidChangeBatch` (HTTP 400), one message per rejected change."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("InvalidChangeBatch", "[" + ", ".join(problems) + "]")


Key = tuple[str, str, str | None]


@dataclass(frozen=True)
class _Record:
    """Every value a DELETE must repeat, normalised so request and live record compare."""

    name: str
    type: str
    set_identifier: str | None
    ttl: int | str | None
    values: tuple[str, ...]
    weight: int | str | None
    alias: tuple[str | None, str | None, bool | str | None] | None
    region: str | None
    failover: str | None
    geo_location: tuple[tuple[str, str], ...] | None
    multi_value_answer: bool | str | None
    health_check_id: str | None

    @property
    def key(self) -> Key:
        return (self.name, self.type, self.set_identifier)

    def describe(self) -> str:
        """How Route53 names a record set in its error messages."""
        identifier = "" if self.set_identifier is None else f", set-identifier='{self.set_identifier}'"
        return f"[name='{self.name}.', type='{self.type}'{identifier}]"


def _name(value: Any) -> str:
    """Lower case, no trailing dot, octal escapes (\\052 for *) decoded."""
    text = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), str(value))
    return text.rstrip(".").lower()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | str | None:
    """60 and "60" compare equal; anything that is not a number stays as text (and differs)."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value)
    try:
        return int(str(value).strip())
    except ValueError:
        return str(value)


def _bool(value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False}.get(text, text)


def _flatten(value: Any) -> list[str]:
    """ResourceRecords as request ([{"Value": v}]), XML ({"ResourceRecord": ...}) or store ([v])."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [
            text for field in ("ResourceRecord", "Value") if field in value for text in _flatten(value[field])
        ]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _flatten(item)]
    return [str(value)]


def _values(value: Any) -> tuple[str, ...]:
    return tuple(sorted(_flatten(value)))  # a record set's values are a set: order is not compared


def _alias(value: Any) -> tuple[str | None, str | None, bool | str | None] | None:
    if not value:
        return None
    zone = _text(value.get("HostedZoneId"))
    if zone is not None:
        zone = zone.rsplit("/", 1)[-1]  # "/hostedzone/Z1" and "Z1" are the same zone
    dns_name = value.get("DNSName")
    return (zone, None if dns_name is None else _name(dns_name), _bool(value.get("EvaluateTargetHealth")))


def _geo(value: Any) -> tuple[tuple[str, str], ...] | None:
    if not value:
        return None
    return tuple(sorted((str(k), str(v)) for k, v in value.items() if v is not None))


def _record(rrset: Mapping[str, Any]) -> _Record:
    """A change's ResourceRecordSet (or a live record in the same shape), normalised."""
    return _Record(
        name=_name(rrset.get("Name", "")),
        type=str(rrset.get("Type", "")).upper(),
        set_identifier=_text(rrset.get("SetIdentifier")),
        ttl=_int(rrset.get("TTL")),
        values=_values(rrset.get("ResourceRecords")),
        weight=_int(rrset.get("Weight")),
        alias=_alias(rrset.get("AliasTarget")),
        region=_text(rrset.get("Region")),
        failover=_text(rrset.get("Failover")),
        geo_location=_geo(rrset.get("GeoLocation")),
        multi_value_answer=_bool(rrset.get("MultiValueAnswer")),
        health_check_id=_text(rrset.get("HealthCheckId")),
    )


def _live(record: models.RecordSet) -> _Record:
    """A stored `moto.route53.models.RecordSet`, normalised like a request."""
    return _record(
        {
            "Name": record.name,
            "Type": record.type,
            "SetIdentifier": record.set_identifier,
            "TTL": record.ttl,
            "ResourceRecords": record.records,
            "Weight": record.weight,
            "AliasTarget": record.alias_target,
            "Region": record.region,
            "Failover": record.failover,
            "GeoLocation": record.geo_location,
            "MultiValueAnswer": record.multi_value_answer,
            "HealthCheckId": record.health_check_id,
        }
    )


def _check_shape(change: Mapping[str, Any], zone_name: str) -> _Record:
    """What Route53 rejects whatever the live records: bad action, name, missing values."""
    action = change.get("Action")
    if action not in _ACTIONS:
        raise InvalidActionValue(str(action))
    rrset = change["ResourceRecordSet"]
    validate_domain_name(rrset["Name"], code="InvalidChangeBatch")
    record = _record(rrset)
    zone = _name(zone_name)
    if record.name != zone and not record.name.endswith("." + zone):
        raise DnsNameInvalidForZone(name=rrset["Name"], zone_name=zone_name)
    if rrset.get("AliasTarget") is None and (rrset.get("TTL") is None or not rrset.get("ResourceRecords")):
        raise InvalidInput(
            "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], "
            f"or TrafficPolicyInstanceId], but found none in Change with [Action={action}, "
            f"Name={rrset['Name']}, Type={rrset.get('Type')}, "
            f"SetIdentifier={rrset.get('SetIdentifier', 'null')}]"
        )
    return record


def _check_batch(zone: models.FakeZone, change_list: Sequence[Mapping[str, Any]]) -> None:
    """Play the batch against the live records; raise before anything is applied."""
    state: dict[Key, _Record] = {}
    for stored in zone.rrsets:
        record = _live(stored)
        state[record.key] = record
    problems: list[str] = []
    for change in change_list:
        wanted = _check_shape(change, zone.name)
        current = state.get(wanted.key)
        action = change["Action"]
        if action == "DELETE":
            if current is None:
                problems.append(
                    f"Tried to delete resource record set {wanted.describe()} but it was not found"
                )
            elif current != wanted:
                problems.append(
                    f"Tried to delete resource record set {wanted.describe()} "
                    "but the values provided do not match the current values"
                )
            else:
                del state[wanted.key]
        elif action == "CREATE" and current is not None:
            problems.append(f"Tried to create resource record set {wanted.describe()} but it already exists")
        else:  # a valid CREATE, or an UPSERT
            state[wanted.key] = wanted
    if problems:
        raise ChangeBatchRejected(problems)


def _stored_form(rrset: Mapping[str, Any]) -> dict[str, Any]:
    """The dict moto's own CREATE hands to RecordSet: trailing dot, values as plain strings."""
    stored = dict(rrset)
    if not str(stored["Name"]).endswith("."):
        stored["Name"] = f"{stored['Name']}."
    if "ResourceRecords" in stored:
        stored["ResourceRecords"] = _flatten(stored["ResourceRecords"])
    return stored


def _apply(zone: models.FakeZone, change_list: Sequence[Mapping[str, Any]]) -> None:
    """Apply a checked batch in order, then swap the zone's records in one assignment."""
    rrsets: list[models.RecordSet] = list(zone.rrsets)
    for change in change_list:
        key = _record(change["ResourceRecordSet"]).key
        rrsets = [stored for stored in rrsets if _live(stored).key != key]
        if change["Action"] in ("CREATE", "UPSERT"):
            rrsets.append(models.RecordSet(_stored_form(change["ResourceRecordSet"])))  # type: ignore[abstract]  # as moto's add_rrset
    zone.rrsets = rrsets
    for change in change_list:
        zone.rr_changes.append(copy.deepcopy(dict(change)))  # moto's journal, kept as moto keeps it


def _strict_change_resource_record_sets(
    self: models.Route53Backend, zoneid: str, change_list: list[dict[str, Any]]
) -> None:
    """Replacement for `Route53Backend.change_resource_record_sets`: all or nothing."""
    with _LOCK:
        zone = self.get_hosted_zone(zoneid)
        _check_batch(zone, change_list)
        _apply(zone, change_list)


def is_strict() -> bool:
    """Whether moto's Route53 backends in this process currently enforce the rules."""
    return models.Route53Backend.__dict__.get(_METHOD) is _strict_change_resource_record_sets


def make_strict() -> Callable[[], None]:
    """Patch moto's Route53 backend class; returns the undo (safe to call twice).

    Undo in the reverse order of patching when nesting, as with any monkeypatch.
    """
    backend = models.Route53Backend
    previous = backend.__dict__[_METHOD]
    setattr(backend, _METHOD, _strict_change_resource_record_sets)
    undone = False

    def undo() -> None:
        nonlocal undone
        if not undone:
            setattr(backend, _METHOD, previous)
            undone = True

    return undo


@contextlib.contextmanager
def strict() -> Iterator[None]:
    """moto's Route53 behaves like real Route53 for change batches inside the block."""
    undo = make_strict()
    try:
        yield
    finally:
        undo()
