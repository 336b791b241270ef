"""The one retry policy: bounded in total time, reported on every wait."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from cutover import retry
from cutover.retry import RetryBudgetExhausted, RetryPolicy
from tests.pipelines.fakes import FakeClock as Clock


def error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


def always(exc: BaseException) -> Any:
    def call() -> None:
        raise exc

    return call


def policy(clock: Clock, notes: list[str], budget: float = 10.0) -> RetryPolicy:
    return RetryPolicy(budget, note=notes.append, sleep=clock.sleep, clock=clock.now)


@pytest.mark.parametrize(
    "exc",
    [
        error("Throttling"),
        error("PriorRequestNotComplete"),
        error("InternalError", 500),
        EndpointConnectionError(endpoint_url="http://x"),
    ],
)
def test_retryable_errors_are_retried_until_the_budget_then_given_up_audibly(exc: BaseException) -> None:
    clock, notes = Clock(), list[str]()
    with pytest.raises(RetryBudgetExhausted, match="gave up after"):
        policy(clock, notes).call("Route53 change", always(exc))
    assert clock.t <= 10.0 and len(notes) >= 3
    assert all("retrying in" in note for note in notes)


def test_other_errors_are_not_retried() -> None:
    clock, notes = Clock(), list[str]()
    with pytest.raises(ClientError):
        policy(clock, notes).call("Route53 change", always(error("InvalidChangeBatch")))
    assert notes == [] and clock.t == 0


def test_a_call_that_recovers_returns_its_answer() -> None:
    clock, notes = Clock(), list[str]()
    answers: Any = iter([error("Throttling"), error("Throttling"), "ok"])

    def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)

    assert policy(clock, notes).call("list", flaky) == "ok" and len(notes) == 2


def test_a_deadline_caps_every_call_inside_it() -> None:
    clock, notes = Clock(), list[str]()
    with retry.deadline(0.0), pytest.raises(RetryBudgetExhausted):
        policy(clock, notes, budget=1000).call("restore", always(error("Throttling")))
    assert notes == []
