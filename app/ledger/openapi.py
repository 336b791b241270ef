"""The OpenAPI 3.1 document, built from the pydantic models the routes validate with."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from ledger.models import Account, AccountCreate, ErrorBody, Transfer, TransferCreate


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json("ErrorBody")}


def _probe(summary: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "tags": ["health"],
            "responses": {
                "200": {"description": "healthy"},
                "503": {"description": "not healthy, with a reason"},
            },
        }
    }


def build_openapi(version: str) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "validation") for m in (AccountCreate, Account, TransferCreate, Transfer, ErrorBody)],
        ref_template="#/components/schemas/{model}",
    )
    id_param = {"in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ledger", "version": version, "description": "Accounts and atomic transfers."},
        "paths": {
            "/accounts": {
                "post": {
                    "summary": "Open an account",
                    "requestBody": {"required": True, **_json("AccountCreate")},
                    "responses": {
                        "201": {"description": "created", **_json("Account")},
                        "413": _error("body over 64 KB"),
                        "415": _error("Content-Type is not JSON"),
                        "422": _error("invalid"),
                    },
                }
            },
            "/accounts/{account_id}": {
                "get": {
                    "summary": "Read an account",
                    "parameters": [{"name": "account_id", **id_param}],
                    "responses": {
                        "200": {"description": "the account", **_json("Account")},
                        "404": _error("unknown"),
                    },
                }
            },
            "/transfers": {
                "post": {
                    "summary": "Move money between two accounts, atomically and idempotently",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        }
                    ],
                    "requestBody": {"required": True, **_json("TransferCreate")},
                    "responses": {
                        "201": {
                            "description": "committed (or replayed: header Idempotent-Replayed)",
                            **_json("Transfer"),
                        },
                        "400": _error("Idempotency-Key missing"),
                        "404": _error("unknown account"),
                        "409": _error("Idempotency-Key reused with another body"),
                        "413": _error("body over 64 KB"),
                        "415": _error("Content-Type is not JSON"),
                        "422": _error(
                            "insufficient funds, currency mismatch, balance out of range or invalid body"
                        ),
                    },
                }
            },
            "/transfers/{transfer_id}": {
                "get": {
                    "summary": "Read a transfer",
                    "parameters": [{"name": "transfer_id", **id_param}],
                    "responses": {
                        "200": {"description": "the transfer", **_json("Transfer")},
                        "404": _error("unknown"),
                    },
                }
            },
            "/health/live": _probe("Liveness: the process answers"),
            "/health/ready": _probe("Readiness: started, not draining, database answering"),
            "/health/startup": _probe("Startup: pool up and schema at the expected version"),
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}
            },
            "/cluster": {
                "get": {"summary": "This instance and its peers", "responses": {"200": {"description": "ok"}}}
            },
        },
        "components": {"schemas": schemas["$defs"]},
    }
