"""Accounts and transfers over HTTP against a real ledger process and Postgres."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.app.conftest import open_account


def transfer(
    client: httpx.Client, source: str, target: str, amount: object, key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return client.post(
        "/transfers",
        json={"from_account_id": source, "to_account_id": target, "amount": amount},
        headers=headers,
    )


def balance(client: httpx.Client, account: str) -> int:
    return int(client.get(f"/accounts/{account}").json()["balance"])


def assert_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_account_is_created_and_read_back(ledger: httpx.Client) -> None:
    answer = ledger.post("/accounts", json={"name": "Ada", "currency": "EUR", "opening_balance": 1234})
    assert answer.status_code == 201
    account = answer.json()
    assert answer.headers["location"] == f"/accounts/{account['id']}"
    read = ledger.get(f"/accounts/{account['id']}").json()
    assert read == account
    assert (read["name"], read["currency"], read["balance"]) == ("Ada", "EUR", 1234)


def test_transfer_moves_money_and_is_logged(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 1000), open_account(ledger, 50)
    answer = transfer(ledger, a, b, 300)
    assert answer.status_code == 201, answer.text
    logged = ledger.get(f"/transfers/{answer.json()['id']}").json()
    assert logged == answer.json()
    assert (logged["from_account_id"], logged["to_account_id"], logged["amount"]) == (a, b, 300)
    assert (balance(ledger, a), balance(ledger, b)) == (700, 350)


def test_transfer_of_the_whole_balance_leaves_zero(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 500), open_account(ledger, 0)
    assert transfer(ledger, a, b, 500).status_code == 201
    assert (balance(ledger, a), balance(ledger, b)) == (0, 500)


def test_insufficient_funds_is_422_and_changes_nothing(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 100), open_account(ledger, 0)
    assert_error(transfer(ledger, a, b, 101), 422, "insufficient_funds")
    assert (balance(ledger, a), balance(ledger, b)) == (100, 0)


def test_same_key_same_body_returns_the_original(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 1000), open_account(ledger, 0)
    first = transfer(ledger, a, b, 10, key="retry-me")
    again = transfer(ledger, a, b, 10, key="retry-me")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (balance(ledger, a), balance(ledger, b)) == (990, 10)


def test_same_key_different_body_is_409_and_changes_nothing(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 1000), open_account(ledger, 0)
    assert transfer(ledger, a, b, 10, key="reused").status_code == 201
    assert_error(transfer(ledger, a, b, 11, key="reused"), 409, "idempotency_key_reused")
    assert (balance(ledger, a), balance(ledger, b)) == (990, 10)


def test_missing_idempotency_key_is_refused(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 1000), open_account(ledger, 0)
    answer = ledger.post("/transfers", json={"from_account_id": a, "to_account_id": b, "amount": 1})
    assert_error(answer, 400, "idempotency_key_required")
    assert balance(ledger, a) == 1000


def test_unknown_accounts_and_transfers_are_404(ledger: httpx.Client) -> None:
    a = open_account(ledger, 1000)
    missing = str(uuid.uuid4())
    assert_error(transfer(ledger, a, missing, 1), 404, "account_not_found")
    assert_error(transfer(ledger, missing, a, 1), 404, "account_not_found")
    assert_error(ledger.get(f"/accounts/{missing}"), 404, "account_not_found")
    assert_error(ledger.get("/accounts/not-a-uuid"), 404, "account_not_found")
    assert_error(ledger.get(f"/transfers/{missing}"), 404, "transfer_not_found")
    assert balance(ledger, a) == 1000


def test_bad_input_is_422_naming_the_field(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 1000), open_account(ledger, 0)
    for amount in (0, -5, 1.5, "10", True, None):
        answer = transfer(ledger, a, b, amount)
        assert_error(answer, 422, "invalid_request")
        assert "amount" in answer.json()["error"]["message"]
    assert_error(transfer(ledger, a, a, 1), 422, "invalid_request")
    bad_accounts = [
        {"name": "", "currency": "EUR"},
        {"name": "x", "currency": "eur"},
        {"name": "x", "currency": "EUR", "opening_balance": -1},
        {"name": "x", "currency": "EUR", "extra": 1},
    ]
    for body in bad_accounts:
        assert_error(ledger.post("/accounts", json=body), 422, "invalid_request")
    broken = ledger.post("/accounts", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(broken, 422, "invalid_request")
    assert (balance(ledger, a), balance(ledger, b)) == (1000, 0)


def test_currency_mismatch_is_422(ledger: httpx.Client) -> None:
    eur, usd = open_account(ledger, 1000, "EUR"), open_account(ledger, 0, "USD")
    assert_error(transfer(ledger, eur, usd, 1), 422, "currency_mismatch")
    assert (balance(ledger, eur), balance(ledger, usd)) == (1000, 0)


def test_unknown_route_and_method_are_json_errors(ledger: httpx.Client) -> None:
    assert_error(ledger.get("/nowhere"), 404, "not_found")
    assert_error(ledger.delete("/accounts"), 405, "method_not_allowed")


def test_retry_after_the_money_moved_replays_instead_of_refusing(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 100), open_account(ledger, 0)
    first = transfer(ledger, a, b, 100, key="drain-it")
    assert first.status_code == 201
    # The source is empty now, so running the transfer again would fail; a retry must not.
    again = transfer(ledger, a, b, 100, key="drain-it")
    assert again.status_code == 201 and again.json() == first.json()
    assert (balance(ledger, a), balance(ledger, b)) == (0, 100)


def test_concurrent_requests_with_one_key_commit_once(ledger: httpx.Client) -> None:
    a, b = open_account(ledger, 1000), open_account(ledger, 0)

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(ledger.base_url)) as http:
            body = {"from_account_id": a, "to_account_id": b, "amount": 7}
            return await asyncio.gather(
                *(
                    http.post("/transfers", json=body, headers={"Idempotency-Key": "racing"})
                    for _ in range(12)
                )
            )

    answers = asyncio.run(race())
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in answers) == 1
    assert (balance(ledger, a), balance(ledger, b)) == (993, 7)


def test_two_idempotency_keys_are_refused_with_422(ledger: httpx.Client) -> None:
    source, target = open_account(ledger, 10), open_account(ledger, 0)
    answer = ledger.post(
        "/transfers",
        json={"from_account_id": source, "to_account_id": target, "amount": 1},
        headers=[("Idempotency-Key", "first"), ("Idempotency-Key", "second")],
    )
    assert_error(answer, 422, "invalid_request")
    assert balance(ledger, source) == 10
