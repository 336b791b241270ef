"""The OpenAPI 3.1 document: the contract client generators and API fuzzers read.

Bodies come from the pydantic models the routes validate with. Every status a route can
answer is listed with the error codes it carries, every header the service sends is
described (tests/app/test_openapi_contract.py generates requests from this document and
checks each answer against it), and every rule the service enforces on a request is
stated in the schema, or in a description where JSON Schema cannot say it.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from ledger.middleware.headers import SECURITY_HEADERS
from ledger.models import Account, AccountCreate, FieldProblem, Transfer, TransferCreate
from ledger.routes._http import MAX_BODY_BYTES
from ledger.routes.transfers import IDEMPOTENCY_KEY_PATTERN

_JSON = "application/json"
_REQUEST_ID = r"^[A-Za-z0-9._:-]{1,128}$"
_TRACEPARENT = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

# Errors any route behind the router can answer, by status.
_UNAVAILABLE = ("unavailable", "database_unavailable", "database_timeout", "database_busy")


def _ref(kind: str, name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {_JSON: {"schema": schema}}}


def _common_headers() -> dict[str, Any]:
    """Headers on every HTTP response, errors and probes included."""
    names = ["X-Request-Id", "X-Served-By", "Traceparent", "Tracestate"]
    names += [name.decode() for name, _ in SECURITY_HEADERS]
    return {name: _ref("headers", name) for name in names}


def _answer(description: str, schema: dict[str, Any] | None = None, **headers: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "headers": {**_common_headers(), **headers}}
    if schema is not None:
        answer.update(_json(schema))
    return answer


def _error(description: str, *codes: str, retry: bool = False, details: bool = False) -> dict[str, Any]:
    """An error answer whose `error.code` is one of `codes`."""
    error: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "enum": list(codes)},
            "message": {"type": "string"},
        },
    }
    if details:
        error["properties"]["details"] = {"type": "array", "items": _ref("schemas", "FieldProblem")}
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["error"],
        "properties": {"error": error},
    }
    headers = {"Retry-After": _ref("headers", "Retry-After")} if retry else {}
    return _answer(description, schema, **headers)


def _server_errors(*, database: bool = True, rate_limited: bool = True) -> dict[str, Any]:
    """The answers every routed operation shares: crash, rate limit, database trouble."""
    answers: dict[str, Any] = {
        "500": _error("internal error (a bug: logged with the request id)", "internal_error")
    }
    if rate_limited:
        answers["429"] = _error(
            "too many requests from this client (when RATE_LIMIT_PER_MINUTE is set)",
            "rate_limited",
            retry=True,
        )
    if database:
        answers["503"] = _error(
            "starting, or the database is unavailable, slow or its pool exhausted: retry after Retry-After",
            *_UNAVAILABLE,
            retry=True,
        )
    return answers


def _body_errors() -> dict[str, Any]:
    return {
        "413": _error(
            f"body over {MAX_BODY_BYTES} bytes (the connection is closed after the answer)",
            "payload_too_large",
        ),
        "415": _error(
            "Content-Type is neither application/json nor application/*+json", "unsupported_media_type"
        ),
    }


def _optional_request_headers() -> list[dict[str, Any]]:
    return [_ref("parameters", name) for name in ("X-Request-Id", "Traceparent", "Tracestate")]


def _header(description: str, schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


def _components(schemas: dict[str, Any]) -> dict[str, Any]:
    security = {
        name.decode(): _header(
            "security header, the same on every answer", {"type": "string", "const": value.decode()}
        )
        for name, value in SECURITY_HEADERS
    }
    return {
        "schemas": schemas,
        "headers": {
            "X-Request-Id": _header(
                "the request's id: the caller's X-Request-Id when it is a sane token, else a new one",
                {"type": "string", "pattern": _REQUEST_ID},
            ),
            "X-Served-By": _header("`<color>/<instance>` that answered", {"type": "string", "minLength": 1}),
            "Traceparent": _header(
                "W3C Trace Context: this request's span, continuing the caller's trace when it sent a valid one",
                {"type": "string", "pattern": _TRACEPARENT},
            ),
            "Tracestate": _header(
                "W3C Trace Context: the caller's tracestate, kept only with a valid traceparent",
                {"type": "string"},
                required=False,
            ),
            "Retry-After": _header(
                "seconds to wait before retrying", {"type": "string", "pattern": r"^[1-9][0-9]*$"}
            ),
            "Location": _header("the path of the resource", {"type": "string", "pattern": "^/"}),
            **security,
        },
        "parameters": {
            "X-Request-Id": {
                "name": "X-Request-Id",
                "in": "header",
                "required": False,
                "description": f"kept and echoed when it matches {_REQUEST_ID}, else replaced",
                "schema": {"type": "string"},
            },
            "Traceparent": {
                "name": "traceparent",
                "in": "header",
                "required": False,
                "description": "W3C Trace Context; an invalid one starts a new trace",
                "schema": {"type": "string"},
            },
            "Tracestate": {
                "name": "tracestate",
                "in": "header",
                "required": False,
                "description": "W3C Trace Context; kept only with a valid traceparent",
                "schema": {"type": "string"},
            },
        },
    }


def _probe(summary: str, *, ready: bool) -> dict[str, Any]:
    ok = {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "properties": {"status": {"const": "ok"}},
    }
    failing = {
        "type": "object",
        "required": ["status", "reason"],
        "additionalProperties": False,
        "properties": {"status": {"enum": ["unavailable", "starting"]}, "reason": {"type": "string"}},
    }
    responses: dict[str, Any] = {"200": _answer("healthy", ok)}
    if ready:
        responses["503"] = _answer("not healthy, with a reason", failing)
        responses["500"] = _error("internal error", "internal_error")
    return {
        "get": {
            "summary": summary,
            "tags": ["health"],
            "parameters": _optional_request_headers(),
            "responses": responses,
        }
    }


def _cluster_schema() -> dict[str, Any]:
    nullable_text = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["self", "discovery", "size", "peers", "feed"],
        "properties": {
            "self": {
                "type": "object",
                "required": ["id", "color", "version", "address", "draining"],
                "properties": {
                    "id": {"type": "string"},
                    "color": {"type": "string"},
                    "version": {"type": "string"},
                    "address": {"type": "string"},
                    "draining": {"type": "boolean"},
                },
            },
            "discovery": {
                "type": "object",
                "required": ["mode", "interval_seconds", "error"],
                "properties": {
                    "mode": {"type": "string"},
                    "interval_seconds": {"type": "number"},
                    "error": nullable_text,
                },
            },
            "size": {"type": "integer", "minimum": 1},
            "peers": {"type": "array"},
            "feed": {
                "type": "object",
                "required": ["degraded", "error", "subscribers", "delivered"],
                "properties": {
                    "degraded": {"type": "boolean"},
                    "error": nullable_text,
                    "subscribers": {"type": "integer", "minimum": 0},
                    "delivered": {"type": "integer", "minimum": 0},
                },
            },
        },
    }


def _resource_paths() -> dict[str, Any]:
    account_id = {
        "name": "account_id",
        "in": "path",
        "required": True,
        "description": "an id that is not a UUID names no account: 404",
        "schema": {"type": "string", "format": "uuid"},
    }
    transfer_id = {**account_id, "name": "transfer_id", "description": "an id that is not a UUID: 404"}
    idempotency_key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": (
            "one per transfer, reused on every retry of it: 1-255 printable ASCII characters "
            "without spaces, sent once (missing: 400; malformed or repeated: 422)"
        ),
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    }
    created = {"Location": _ref("headers", "Location")}
    return {
        "/accounts": {
            "post": {
                "summary": "Open an account",
                "parameters": _optional_request_headers(),
                "requestBody": {"required": True, **_json(_ref("schemas", "AccountCreate"))},
                "responses": {
                    "201": _answer("created", _ref("schemas", "Account"), **created),
                    **_body_errors(),
                    "422": _error(
                        "the body is not valid: `details` names each problem", "invalid_request", details=True
                    ),
                    **_server_errors(),
                },
            }
        },
        "/accounts/{account_id}": {
            "get": {
                "summary": "Read an account",
                "parameters": [account_id, *_optional_request_headers()],
                "responses": {
                    "200": _answer("the account", _ref("schemas", "Account")),
                    "404": _error("no such account", "account_not_found", "not_found"),
                    **_server_errors(),
                },
            }
        },
        "/transfers": {
            "post": {
                "summary": "Move money between two accounts, atomically and idempotently",
                "description": (
                    "`from_account_id` and `to_account_id` must differ (422 `invalid_request`). "
                    "A retry with the same Idempotency-Key and body answers as the first did "
                    "(201 with Idempotent-Replayed, or the same refusal); with another body: 409."
                ),
                "parameters": [idempotency_key, *_optional_request_headers()],
                "requestBody": {"required": True, **_json(_ref("schemas", "TransferCreate"))},
                "responses": {
                    "201": _answer(
                        "committed, or the replay of the transfer this key committed",
                        _ref("schemas", "Transfer"),
                        **created,
                        **{
                            "Idempotent-Replayed": _header(
                                "present on a replay", {"type": "string", "const": "true"}, required=False
                            )
                        },
                    ),
                    "400": _error("Idempotency-Key missing", "idempotency_key_required"),
                    "404": _error("an account does not exist", "account_not_found"),
                    "409": _error("Idempotency-Key already used with another body", "idempotency_key_reused"),
                    **_body_errors(),
                    "422": _error(
                        "invalid body or Idempotency-Key (`details` names each body problem), "
                        "insufficient funds, currency mismatch, or a balance past the largest",
                        "invalid_request",
                        "insufficient_funds",
                        "currency_mismatch",
                        "balance_out_of_range",
                        details=True,
                    ),
                    **_server_errors(),
                },
            }
        },
        "/transfers/{transfer_id}": {
            "get": {
                "summary": "Read a transfer",
                "parameters": [transfer_id, *_optional_request_headers()],
                "responses": {
                    "200": _answer("the transfer", _ref("schemas", "Transfer")),
                    "404": _error("no such transfer", "transfer_not_found", "not_found"),
                    **_server_errors(),
                },
            }
        },
    }


def _meta_paths() -> dict[str, Any]:
    def get(
        summary: str, ok: dict[str, Any], *, tags: list[str], rate_limited: bool = True
    ) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "tags": tags,
                "parameters": _optional_request_headers(),
                "responses": {"200": ok, **_server_errors(database=False, rate_limited=rate_limited)},
            }
        }

    metrics_ok = {
        "description": "Prometheus text format",
        "headers": _common_headers(),
        "content": {"text/plain": {"schema": {"type": "string"}}},  # version=0.0.4; charset=utf-8
    }
    return {
        "/health/live": {
            "get": {
                "summary": "Liveness: the process answers",
                "tags": ["health"],
                "parameters": _optional_request_headers(),
                "responses": {
                    "200": _answer(
                        "alive",
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
                    )
                },
            }
        },
        "/health/ready": _probe("Readiness: started, not draining, database answering", ready=True),
        "/health/startup": _probe("Startup: pool up and schema at the expected version", ready=True),
        "/metrics": get("Prometheus metrics", metrics_ok, tags=["meta"], rate_limited=False),
        "/cluster": get(
            "This instance, its peers and the live feed",
            _answer("ok", _cluster_schema()),
            tags=["meta"],
        ),
        "/openapi.json": get("This document", _answer("the document", {"type": "object"}), tags=["meta"]),
    }


# Answers the HTTP protocol (ledger/http_protocol.py) writes before any route sees the
# request: on any path, so described once here instead of on every operation.
_CONNECTION_LAYER = (
    "Also not in the operations below: answers the connection layer writes before the "
    "application sees a request, on any path, each a JSON error with `connection: close`, "
    "X-Request-Id, X-Served-By and the security headers but no Traceparent: "
    "400 `bad_request` (a request the HTTP parser refuses), "
    "408 `header_timeout` or `body_timeout` (headers or body too slow to arrive), "
    "431 `request_header_fields_too_large` (request line and headers over the limit), "
    "503 `over_capacity` (at the connection limit: Retry-After 1 when a stalled connection is "
    "evicted; none on a place kept for the health probes) and 503 `shutting_down` (Retry-After 0)."
)


def build_openapi(version: str) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "validation") for m in (AccountCreate, Account, TransferCreate, Transfer, FieldProblem)],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ledger",
            "version": version,
            "description": (
                'Accounts and atomic transfers. Every error is JSON `{"error": {"code", "message"}}` '
                "(422 `invalid_request` adds `details`). Not described here: WS /ws/transfers, the live "
                "feed of committed transfers (a websocket; refused handshakes answer 429 or 503 with "
                "Retry-After), and unknown paths or methods (404 `not_found`, 405 `method_not_allowed`). "
                "HEAD is answered on every GET path as GET is, without a body. " + _CONNECTION_LAYER
            ),
        },
        "paths": {**_resource_paths(), **_meta_paths()},
        "components": _components(schemas["$defs"]),
    }
