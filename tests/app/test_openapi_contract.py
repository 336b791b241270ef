"""The OpenAPI document is the contract: requests generated from it (valid and invalid) get
documented answers, and every answer matches the document's schemas and headers.

Schemathesis reads the document ledger serves and generates requests from it against a real
`ledger serve` on a real Postgres. Valid requests must never be refused as malformed (400,
413, 415, 422 `invalid_request`) nor crash (5xx); invalid ones must be refused with a
documented 4xx. Every response is checked by status code, content type, headers and body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ledger.openapi import build_openapi
from tests.app.conftest import open_account

_PATHS: dict[str, dict[str, Any]] = build_openapi("0")["paths"]
OPERATIONS = [(path, method) for path, item in _PATHS.items() for method in item]
# Operations with something to get wrong: a body, a path id or a required header. (Free-text
# optional headers such as X-Request-Id have no invalid value to generate.)
CONSTRAINED = [
    (path, method)
    for path, method in OPERATIONS
    if "requestBody" in _PATHS[path][method]
    or any(p.get("in") == "path" or p.get("required") for p in _PATHS[path][method].get("parameters", []))
]
EXAMPLES = 120
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Codes that mean "your request is malformed": a request the document calls valid must not
# get one (`from_account_id` equal to `to_account_id` excepted: JSON Schema cannot say it).
MALFORMED = {"invalid_request", "idempotency_key_required", "payload_too_large", "unsupported_media_type"}


@pytest.fixture(scope="module")
def schema(ledger: httpx.Client) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(ledger.get("/openapi.json").json())


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def _is_same_account_transfer(case: schemathesis.Case[Any]) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    return bool(body) and body.get("from_account_id") == body.get("to_account_id")


def _check_positive(case: schemathesis.Case[Any], response: Any) -> None:
    status = response.status_code
    assert status < 500, f"valid request crashed the service: {status} {response.text[:300]}"
    if status >= 400:
        code = response.json()["error"]["code"]
        if code == "invalid_request" and _is_same_account_transfer(case):
            return
        assert code not in MALFORMED, f"valid request refused as malformed: {response.text[:300]}"


def _check_negative(response: Any) -> None:
    status = response.status_code
    assert 400 <= status < 500, f"invalid request not refused with a 4xx: {status} {response.text[:300]}"


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _run(
    schema: schemathesis.BaseSchema,
    session: requests.Session,
    base_url: str,
    path: str,
    method: str,
    mode: GenerationMode,
) -> None:
    operation = schema[path][method]

    @_SETTINGS
    @given(operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=base_url, session=session)
        case.validate_response(response, checks=CONFORMANCE)
        if mode is GenerationMode.POSITIVE:
            _check_positive(case, response)
        else:
            _check_negative(response)

    check()


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_valid_requests_get_documented_answers(
    ledger: httpx.Client, schema: schemathesis.BaseSchema, session: requests.Session, path: str, method: str
) -> None:
    _run(schema, session, str(ledger.base_url), path, method, GenerationMode.POSITIVE)


@pytest.mark.parametrize(("path", "method"), CONSTRAINED)
def test_invalid_requests_are_refused_as_documented(
    ledger: httpx.Client, schema: schemathesis.BaseSchema, session: requests.Session, path: str, method: str
) -> None:
    _run(schema, session, str(ledger.base_url), path, method, GenerationMode.NEGATIVE)


def test_valid_transfers_between_real_accounts_get_documented_answers(
    ledger: httpx.Client, schema: schemathesis.BaseSchema, session: requests.Session
) -> None:
    """Amounts and keys from the document, accounts that exist: commits, replays, refusals."""
    eur = [open_account(ledger, 10**6, "EUR"), open_account(ledger, 10**6, "EUR")]
    usd = open_account(ledger, 10**6, "USD")
    pairs = [(eur[0], eur[1]), (eur[1], eur[0]), (eur[0], usd)]
    statuses: set[int] = set()

    @_SETTINGS
    @given(schema["/transfers"]["POST"].as_strategy(), st.sampled_from(pairs))
    def check(case: schemathesis.Case[Any], pair: tuple[str, str]) -> None:
        assert isinstance(case.body, dict)
        case.body = {**case.body, "from_account_id": pair[0], "to_account_id": pair[1]}
        response = case.call(base_url=str(ledger.base_url), session=session)
        case.validate_response(response, checks=CONFORMANCE)
        _check_positive(case, response)
        statuses.add(response.status_code)

    check()
    assert {201, 422} <= statuses  # committed some, refused some (funds or currency)
