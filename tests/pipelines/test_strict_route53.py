"""The strict Route53 patch, through a real moto server over HTTP: exact-match DELETEs,
all-or-nothing batches, CREATE of a live record refused, the atomic swap allowed, and plain
moto back afterwards."""

from __future__ import annotations

import copy
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.route53 import models
from moto.server import ThreadedMotoServer

from cutover.local.ports import free_port
from cutover.local.strict_route53 import is_strict, make_strict, strict
from tests.pipelines.conftest import ALB, GENERATION, RECORD, create_zone, generation_record, weighted

# moto's own journal check, captured before conftest's autouse fixture replaces it per test.
MOTO_JOURNAL_CHECK = models.ChangeList.__contains__
MOTO_CHANGE_METHOD = models.Route53Backend.change_resource_record_sets

MISMATCH = "but the values provided do not match the current values"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def client(endpoint: str) -> Any:
    """Plain moto (no patch) with an empty account."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return boto3.client(
        "route53",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def strict_client(client: Any) -> Iterator[Any]:
    with strict():
        yield client
    assert not is_strict()


@pytest.fixture
def zone(client: Any) -> str:
    """blue 100 / green 0 weighted aliases and the generation TXT record."""
    return create_zone(client, blue=100, green=0)


def records(client: Any, zone: str) -> list[dict[str, Any]]:
    """The zone's records other than its NS and SOA, as list_resource_record_sets returns them."""
    listed = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [r for r in listed if r["Type"] not in ("NS", "SOA")]


def live(client: Any, zone: str, name: str, set_identifier: str | None = None) -> dict[str, Any]:
    (found,) = [
        r for r in records(client, zone) if r["Name"] == name and r.get("SetIdentifier") == set_identifier
    ]
    return dict(found)


def change(client: Any, zone: str, *changes: tuple[str, dict[str, Any]]) -> Any:
    batch = {"Changes": [{"Action": action, "ResourceRecordSet": rrset} for action, rrset in changes]}
    return client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=batch)


def rejected(call: Callable[[], Any]) -> str:
    """Run a change that must fail as real Route53 fails it; return the message."""
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    assert error["Error"]["Code"] == "InvalidChangeBatch"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error["Error"]["Message"])


def with_(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    changed.update(fields)
    return changed


# (a) the atomic swap


def test_exact_swap_built_from_the_listed_records_succeeds(strict_client: Any, zone: str) -> None:
    blue, green = live(strict_client, zone, RECORD, "blue"), live(strict_client, zone, RECORD, "green")
    generation = live(strict_client, zone, GENERATION)
    change(
        strict_client,
        zone,
        ("DELETE", blue),
        ("CREATE", weighted("blue", 90)),
        ("DELETE", green),
        ("CREATE", weighted("green", 10)),
        ("DELETE", generation),
        ("CREATE", generation_record(1)),
    )
    after = records(strict_client, zone)
    assert sorted((r.get("SetIdentifier", ""), r.get("Weight")) for r in after) == [
        ("", None),
        ("blue", 90),
        ("green", 10),
    ]
    assert live(strict_client, zone, GENERATION)["ResourceRecords"] == [{"Value": '"cutover-generation=1"'}]
    assert len(after) == 3


def test_swap_back_to_values_seen_before_works_even_with_motos_journal_check(
    strict_client: Any, zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.ChangeList, "__contains__", MOTO_JOURNAL_CHECK)
    change(strict_client, zone, ("DELETE", weighted("blue", 100)), ("CREATE", weighted("blue", 90)))
    change(strict_client, zone, ("DELETE", weighted("blue", 90)), ("CREATE", weighted("blue", 100)))
    assert live(strict_client, zone, RECORD, "blue")["Weight"] == 100


def test_the_journal_quirk_is_real_in_plain_moto(
    client: Any, zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.ChangeList, "__contains__", MOTO_JOURNAL_CHECK)
    change(client, zone, ("DELETE", weighted("blue", 100)), ("CREATE", weighted("blue", 90)))
    message = rejected(
        lambda: change(client, zone, ("DELETE", weighted("blue", 90)), ("CREATE", weighted("blue", 100)))
    )
    assert "already exists" in message


def test_names_are_compared_without_case_or_trailing_dot(strict_client: Any, zone: str) -> None:
    shouting = with_(generation_record(0), Name=GENERATION.rstrip(".").upper())
    change(strict_client, zone, ("DELETE", shouting), ("CREATE", generation_record(1)))
    assert live(strict_client, zone, GENERATION)["ResourceRecords"] == [{"Value": '"cutover-generation=1"'}]


def test_upsert_and_delete_of_a_record_created_in_the_same_batch(strict_client: Any, zone: str) -> None:
    extra = {"Name": "extra.example.com.", "Type": "A", "TTL": 30, "ResourceRecords": [{"Value": "10.0.0.1"}]}
    change(strict_client, zone, ("CREATE", extra), ("DELETE", extra), ("UPSERT", weighted("green", 5)))
    assert [r["Name"] for r in records(strict_client, zone)].count("extra.example.com.") == 0
    assert live(strict_client, zone, RECORD, "green")["Weight"] == 5


# (b) a wrong weight rejects the whole batch


def test_delete_with_a_wrong_weight_is_rejected_and_nothing_is_applied(strict_client: Any, zone: str) -> None:
    before = records(strict_client, zone)
    message = rejected(
        lambda: change(
            strict_client,
            zone,
            ("DELETE", weighted("blue", 99)),
            ("CREATE", weighted("blue", 90)),
            ("DELETE", weighted("green", 0)),
            ("CREATE", weighted("green", 10)),
        )
    )
    # every rejected change is listed; the failed DELETE left blue in place, so its CREATE fails too
    blue = f"[name='{RECORD}', type='A', set-identifier='blue']"
    assert message == (
        f"[Tried to delete resource record set {blue} {MISMATCH}, "
        f"Tried to create resource record set {blue} but it already exists]"
    )
    assert records(strict_client, zone) == before


def test_a_valid_first_change_is_not_applied_when_a_later_one_fails(strict_client: Any, zone: str) -> None:
    before = records(strict_client, zone)
    message = rejected(
        lambda: change(
            strict_client,
            zone,
            ("DELETE", generation_record(0)),
            ("CREATE", generation_record(1)),
            ("DELETE", weighted("blue", 99)),
            ("CREATE", weighted("blue", 90)),
        )
    )
    assert MISMATCH in message
    assert records(strict_client, zone) == before


def test_a_name_outside_the_zone_later_in_the_batch_applies_nothing(strict_client: Any, zone: str) -> None:
    before = records(strict_client, zone)
    outside = with_(generation_record(1), Name="_cutover.other.org.")
    message = rejected(
        lambda: change(
            strict_client,
            zone,
            ("DELETE", generation_record(0)),
            ("CREATE", generation_record(1)),
            ("CREATE", outside),
        )
    )
    assert "not permitted in zone" in message
    assert records(strict_client, zone) == before


# (c) every value of a DELETE counts


def _wrong_txt(record: dict[str, Any]) -> dict[str, Any]:
    return with_(record, ResourceRecords=[{"Value": '"cutover-generation=7"'}])


def _extra_txt_value(record: dict[str, Any]) -> dict[str, Any]:
    return with_(record, ResourceRecords=[*record["ResourceRecords"], {"Value": '"x"'}])


def _wrong_ttl(record: dict[str, Any]) -> dict[str, Any]:
    return with_(record, TTL=300)


def _wrong_dns_name(record: dict[str, Any]) -> dict[str, Any]:
    return with_(
        record, AliasTarget={**record["AliasTarget"], "DNSName": "stale-alb-789.eu-west-1.elb.amazonaws.com."}
    )


def _wrong_alias_zone(record: dict[str, Any]) -> dict[str, Any]:
    return with_(record, AliasTarget={**record["AliasTarget"], "HostedZoneId": "Z0000000000000"})


def _wrong_health_flag(record: dict[str, Any]) -> dict[str, Any]:
    return with_(record, AliasTarget={**record["AliasTarget"], "EvaluateTargetHealth": False})


def _no_weight(record: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    del changed["Weight"]
    return changed


@pytest.mark.parametrize(
    ("name", "set_identifier", "spoil"),
    [
        (GENERATION, None, _wrong_txt),
        (GENERATION, None, _extra_txt_value),
        (GENERATION, None, _wrong_ttl),
        (RECORD, "blue", _wrong_dns_name),
        (RECORD, "blue", _wrong_alias_zone),
        (RECORD, "blue", _wrong_health_flag),
        (RECORD, "blue", _no_weight),
    ],
    ids=[
        "txt-value",
        "txt-extra-value",
        "ttl",
        "alias-dns-name",
        "alias-zone",
        "evaluate-health",
        "no-weight",
    ],
)
def test_a_delete_with_any_changed_value_is_rejected(
    strict_client: Any,
    zone: str,
    name: str,
    set_identifier: str | None,
    spoil: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    before = records(strict_client, zone)
    exact = live(strict_client, zone, name, set_identifier)
    message = rejected(
        lambda: change(strict_client, zone, ("DELETE", spoil(exact)), ("CREATE", spoil(exact)))
    )
    assert MISMATCH in message
    assert records(strict_client, zone) == before


def test_a_delete_with_a_wrong_set_identifier_is_rejected(strict_client: Any, zone: str) -> None:
    before = records(strict_client, zone)
    purple = with_(weighted("blue", 100), SetIdentifier="purple")
    message = rejected(lambda: change(strict_client, zone, ("DELETE", purple)))
    assert message == (
        f"[Tried to delete resource record set [name='{RECORD}', type='A', set-identifier='purple'] "
        "but it was not found]"
    )
    assert records(strict_client, zone) == before


# (d) CREATE of a live record


def test_create_of_a_record_that_exists_is_rejected(strict_client: Any, zone: str) -> None:
    before = records(strict_client, zone)
    message = rejected(
        lambda: change(
            strict_client, zone, ("CREATE", generation_record(1)), ("CREATE", weighted("blue", 50))
        )
    )
    assert message == (
        f"[Tried to create resource record set [name='{GENERATION}', type='TXT'] but it already exists, "
        f"Tried to create resource record set [name='{RECORD}', type='A', set-identifier='blue'] "
        "but it already exists]"
    )
    assert records(strict_client, zone) == before


def test_create_twice_in_one_batch_is_rejected(strict_client: Any, zone: str) -> None:
    extra = {"Name": "extra.example.com.", "Type": "A", "TTL": 30, "ResourceRecords": [{"Value": "10.0.0.1"}]}
    assert "already exists" in rejected(
        lambda: change(strict_client, zone, ("CREATE", extra), ("CREATE", extra))
    )
    assert "extra.example.com." not in [r["Name"] for r in records(strict_client, zone)]


# values as an XML parser may hand them over


def test_string_typed_values_from_the_request_parser_are_normalised(strict_client: Any, zone: str) -> None:
    backend = models.route53_backends["123456789012"]["aws"]
    as_strings = {
        "Name": RECORD,
        "Type": "A",
        "SetIdentifier": "blue",
        "Weight": "100",
        "AliasTarget": {"HostedZoneId": f"/hostedzone/{weighted('blue', 100)['AliasTarget']['HostedZoneId']}",
                        "DNSName": ALB["blue"].upper(), "EvaluateTargetHealth": "true"},
    }  # fmt: skip
    txt = {
        "Name": GENERATION,
        "Type": "TXT",
        "TTL": "60",
        "ResourceRecords": {"ResourceRecord": [{"Value": '"cutover-generation=0"'}]},
    }
    backend.change_resource_record_sets(
        zone.rsplit("/", 1)[-1],
        [
            {"Action": "DELETE", "ResourceRecordSet": as_strings},
            {"Action": "CREATE", "ResourceRecordSet": weighted("blue", 90)},
            {"Action": "DELETE", "ResourceRecordSet": txt},
            {"Action": "CREATE", "ResourceRecordSet": generation_record(1)},
        ],
    )
    assert live(strict_client, zone, RECORD, "blue")["Weight"] == 90
    wrong = [{"Action": "DELETE", "ResourceRecordSet": with_(as_strings, Weight="90 ")}]
    backend.change_resource_record_sets(zone.rsplit("/", 1)[-1], wrong)  # "90 " is 90
    assert "blue" not in [r.get("SetIdentifier") for r in records(strict_client, zone)]


# (e) undone afterwards, (f) plain moto


def test_the_patch_is_undone_and_plain_moto_returns(client: Any, zone: str) -> None:
    with strict():
        assert is_strict()
        rejected(lambda: change(client, zone, ("DELETE", weighted("blue", 99))))
    assert not is_strict()
    assert models.Route53Backend.change_resource_record_sets is MOTO_CHANGE_METHOD
    change(client, zone, ("DELETE", weighted("blue", 99)))  # plain moto accepts the stale DELETE
    assert "blue" not in [r.get("SetIdentifier") for r in records(client, zone)]


def test_make_strict_returns_an_undo_that_is_safe_to_call_twice(client: Any, zone: str) -> None:
    undo = make_strict()
    try:
        rejected(lambda: change(client, zone, ("DELETE", weighted("green", 1))))
    finally:
        undo()
    undo()
    assert models.Route53Backend.change_resource_record_sets is MOTO_CHANGE_METHOD


def test_plain_moto_accepts_deletes_that_do_not_match(client: Any, zone: str) -> None:
    assert not is_strict()
    change(client, zone, ("DELETE", weighted("blue", 99)), ("CREATE", weighted("blue", 90)))
    assert live(client, zone, RECORD, "blue")["Weight"] == 90
    change(client, zone, ("DELETE", _wrong_dns_name(weighted("green", 0))), ("CREATE", weighted("green", 10)))
    assert live(client, zone, RECORD, "green")["Weight"] == 10
    # the generation moved on to 1, and moto still accepts a DELETE of generation 0 (it
    # compares with every value it ever journaled, not with the live record)
    change(client, zone, ("DELETE", generation_record(0)), ("CREATE", generation_record(1)))
    change(client, zone, ("DELETE", generation_record(0)), ("CREATE", generation_record(2)))
    assert live(client, zone, GENERATION)["ResourceRecords"] == [{"Value": '"cutover-generation=2"'}]


def test_the_same_stale_deletes_fail_under_the_patch(strict_client: Any, zone: str) -> None:
    rejected(
        lambda: change(
            strict_client, zone, ("DELETE", weighted("blue", 99)), ("CREATE", weighted("blue", 90))
        )
    )
    rejected(
        lambda: change(
            strict_client,
            zone,
            ("DELETE", _wrong_dns_name(weighted("green", 0))),
            ("CREATE", weighted("green", 10)),
        )
    )
    change(strict_client, zone, ("DELETE", generation_record(0)), ("CREATE", generation_record(1)))
    rejected(
        lambda: change(
            strict_client, zone, ("DELETE", generation_record(0)), ("CREATE", generation_record(2))
        )
    )
    assert live(strict_client, zone, GENERATION)["ResourceRecords"] == [{"Value": '"cutover-generation=1"'}]


def test_the_patch_applies_under_mock_aws_too(route53: Any) -> None:
    """`route53` is conftest's in-process client (mock_aws), no server involved."""
    zone = create_zone(route53)
    with strict():
        rejected(lambda: change(route53, zone, ("DELETE", weighted("blue", 99))))
        change(route53, zone, ("DELETE", weighted("blue", 100)), ("CREATE", weighted("blue", 90)))
    assert live(route53, zone, RECORD, "blue")["Weight"] == 90
