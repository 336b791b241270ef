"""POST /transfers (Idempotency-Key required), GET /transfers/{id}."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.errors import InvalidRequest, MissingIdempotencyKey, TransferNotFound
from ledger.models import TransferCreate
from ledger.routes._http import JSONResponse, parse_body, parse_uuid
from ledger.runtime import Runtime

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, no spaces (in the OpenAPI document)
_VALID_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def transfer_routes(runtime: Runtime) -> list[Route]:
    async def create_transfer(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key is None:
            raise MissingIdempotencyKey(
                "the Idempotency-Key header is required: send a unique value per transfer "
                "and reuse it when you retry"
            )
        if len(request.headers.getlist("idempotency-key")) > 1:  # which one would the retry match?
            raise InvalidRequest("send exactly one Idempotency-Key header")
        if not _VALID_KEY.match(key):
            raise InvalidRequest("Idempotency-Key must be 1-255 printable ASCII characters without spaces")
        body = await parse_body(request, TransferCreate)
        transfer, replayed = await runtime.store.create_transfer(body, key)
        headers = {"location": f"/transfers/{transfer.id}"}
        if replayed:
            headers["idempotent-replayed"] = "true"
        return JSONResponse(transfer, status_code=201, headers=headers)

    async def get_transfer(request: Request) -> Response:
        transfer_id = parse_uuid(request.path_params["transfer_id"], TransferNotFound, "transfer")
        return JSONResponse(await runtime.store.get_transfer(transfer_id))

    return [
        Route("/transfers", create_transfer, methods=["POST"]),
        Route("/transfers/{transfer_id}", get_transfer, methods=["GET"]),
    ]
