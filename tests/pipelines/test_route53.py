"""The Route53 router: what it reads, the one batch it sends, and how it fails safe."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from cutover.adapters.route53 import Route53Router
from cutover.model import BadInput, Traffic
from cutover.ports import ConcurrentChange
from tests.pipelines.conftest import StrictRoute53, create_zone, generation_record, snapshot, weighted


def router(client: Any, zone: str) -> Route53Router:
    return Route53Router(client, zone, "ledger.example.com", sleep=lambda _s: None)


def test_reads_weights_and_generation(route53: Any) -> None:
    zone = create_zone(route53, blue=100, green=0)
    assert router(route53, zone).read() == Traffic(100, 0, 0)


def test_one_batch_deletes_the_exact_records_and_creates_the_new_ones(route53: Any) -> None:
    zone = create_zone(route53)
    strict = StrictRoute53(route53)
    r53 = router(strict, zone)
    before = r53.read()
    applied = r53.set(Traffic(90, 10), expected=before)
    assert applied == Traffic(90, 10, 1)
    (batch,) = strict.batches
    assert batch["Changes"] == [
        {"Action": "DELETE", "ResourceRecordSet": weighted("blue", 100)},
        {"Action": "CREATE", "ResourceRecordSet": weighted("blue", 90)},
        {"Action": "DELETE", "ResourceRecordSet": weighted("green", 0)},
        {"Action": "CREATE", "ResourceRecordSet": weighted("green", 10)},
        {"Action": "DELETE", "ResourceRecordSet": generation_record(0)},
        {"Action": "CREATE", "ResourceRecordSet": generation_record(1)},
    ]
    assert router(route53, zone).read() == Traffic(90, 10, 1)
    assert r53.wait_in_sync(timeout=5) >= 0
    # A second change from the state the first produced, without reading again:
    assert r53.set(Traffic(50, 50), expected=applied) == Traffic(50, 50, 2)
    assert router(route53, zone).read() == Traffic(50, 50, 2)


def test_a_concurrent_writer_makes_the_batch_fail_instead_of_being_overwritten(route53: Any) -> None:
    zone = create_zone(route53)
    ours, theirs = router(StrictRoute53(route53), zone), router(StrictRoute53(route53), zone)
    seen = ours.read()
    theirs.set(Traffic(0, 100), expected=theirs.read())  # someone else moves first
    with pytest.raises(ConcurrentChange):
        ours.set(Traffic(90, 10), expected=seen)
    assert router(route53, zone).read() == Traffic(0, 100, 1)


def test_same_weights_but_a_newer_generation_is_still_a_conflict(route53: Any) -> None:
    zone = create_zone(route53)
    ours, theirs = router(StrictRoute53(route53), zone), router(StrictRoute53(route53), zone)
    seen = ours.read()
    moved = theirs.set(Traffic(90, 10), expected=theirs.read())
    theirs.set(Traffic(100, 0), expected=moved)  # back to the same weights, generation 2
    with pytest.raises(ConcurrentChange):
        ours.set(Traffic(0, 100), expected=seen)


def test_throttling_is_retried(route53: Any) -> None:
    zone = create_zone(route53)

    class Throttled:
        def __init__(self) -> None:
            self.failures = 2

        def __getattr__(self, name: str) -> Any:
            return getattr(route53, name)

        def change_resource_record_sets(self, **kwargs: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Change")
            return route53.change_resource_record_sets(**kwargs)

    r53 = router(Throttled(), zone)
    assert r53.set(Traffic(0, 100), expected=r53.read()) == Traffic(0, 100, 1)


def test_missing_records_are_bad_input(route53: Any) -> None:
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="empty")["HostedZone"]["Id"]
    with pytest.raises(BadInput, match=r"no weighted A record ledger\.example\.com\."):
        router(route53, zone).read()
    assert len(snapshot(route53, zone)) == 2  # SOA and NS only: nothing was written
