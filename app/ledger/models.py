"""Request and response bodies. The OpenAPI document is built from these models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

MAX_AMOUNT = 2**62  # keeps every sum of two amounts inside Postgres bigint
MAX_BALANCE = 2**63 - 1  # Postgres bigint: a credit past this is refused, not overflowed


def _no_nul(value: str) -> str:
    # Postgres text cannot hold U+0000: refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


Cents = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT, description="Amount in minor units (cents).")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountCreate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
    currency: Currency
    opening_balance: Cents = 0


class Account(_Body):
    id: UUID
    name: str
    currency: str
    balance: int
    created_at: datetime


class TransferCreate(_Body):
    from_account_id: UUID
    to_account_id: UUID
    amount: Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT, description="Amount in minor units (cents).")]


class Transfer(_Body):
    id: UUID
    from_account_id: UUID
    to_account_id: UUID
    amount: int
    currency: str
    created_at: datetime


class ErrorDetail(_Body):
    code: str
    message: str


class ErrorBody(_Body):
    error: ErrorDetail
