"""Request and response bodies. The OpenAPI document is built from these models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

MAX_AMOUNT = 2**62  # keeps every sum of two amounts inside Postgres bigint
MAX_BALANCE = 2**63 - 1  # Postgres bigint: a credit past this is refused, not overflowed
# Written with a fraction or an exponent (`60.0`, `6e1`), a JSON number is decoded as a
# double: whole numbers are exact only up to 2**53, so larger ones must be written as integers.
MAX_EXACT_FRACTIONAL = 2**53


def _no_nul(value: str) -> str:
    # Postgres text cannot hold U+0000: refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


def _whole_number(value: object) -> object:
    """JSON Schema calls `60` and `60.0` the same integer: accept both, exactly, never a string."""
    if isinstance(value, float):
        if not value.is_integer() or abs(value) > MAX_EXACT_FRACTIONAL:
            raise ValueError(
                f"must be a whole number (written with a fraction or exponent: at most {MAX_EXACT_FRACTIONAL})"
            )
        return int(value)
    return value


_CENTS_RULES = (
    "Amount in minor units (cents): a whole number. Written with a fraction or an exponent "
    f"(60.0, 6e1) it must be at most {MAX_EXACT_FRACTIONAL}, where doubles are exact."
)
Cents = Annotated[
    StrictInt, Field(ge=0, le=MAX_AMOUNT, description=_CENTS_RULES), BeforeValidator(_whole_number)
]
PositiveCents = Annotated[
    StrictInt, Field(gt=0, le=MAX_AMOUNT, description=_CENTS_RULES), BeforeValidator(_whole_number)
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountCreate(_Body):
    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            json_schema_extra={"pattern": r"^[^\x00]*$"},  # checked by _no_nul, with its message
            description="Any text without NUL.",
        ),
        AfterValidator(_no_nul),
    ]
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
    amount: PositiveCents


class Transfer(_Body):
    id: UUID
    from_account_id: UUID
    to_account_id: UUID
    amount: int
    currency: str
    created_at: datetime


class FieldProblem(_Body):
    """One reason a body was refused (422 `invalid_request`)."""

    field: str = Field(description="Dotted path of the offending field, or `body`.")
    message: str
