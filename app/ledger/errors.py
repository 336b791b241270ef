"""API errors: one exception type per error code, rendered as `{"error": {"code", "message"}}`."""

from __future__ import annotations

from typing import Any

import orjson


class ApiError(Exception):
    """An error the client caused or can act on. Subclasses fix the status and code."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class InvalidRequest(ApiError):
    status, code = 422, "invalid_request"


class MissingIdempotencyKey(ApiError):
    status, code = 400, "idempotency_key_required"


class AccountNotFound(ApiError):
    status, code = 404, "account_not_found"


class TransferNotFound(ApiError):
    status, code = 404, "transfer_not_found"


class InsufficientFunds(ApiError):
    status, code = 422, "insufficient_funds"


class CurrencyMismatch(ApiError):
    status, code = 422, "currency_mismatch"


class BalanceOutOfRange(ApiError):
    status, code = 422, "balance_out_of_range"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class IdempotencyConflict(ApiError):
    status, code = 409, "idempotency_key_reused"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database driver lost its connection or could not get one (503, retry).

    Raised only at the store's boundary, from errors the driver or its sockets raised: the
    error middleware resets the pool on this, and on nothing else.
    """

    code = "database_unavailable"


class DatabaseTimeout(ServiceUnavailable):
    """statement_timeout or lock_timeout fired: the database is slow, not gone (503, retry)."""

    code = "database_timeout"


CLIENT_CLOSED_REQUEST = 499  # counted in metrics when the client left before its request was read


def error_body(code: str, message: str, details: Any = None) -> bytes:
    """The JSON body every error response carries."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})
