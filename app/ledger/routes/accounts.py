"""POST /accounts, GET /accounts/{id}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.errors import AccountNotFound
from ledger.models import AccountCreate
from ledger.routes._http import JSONResponse, parse_body, parse_uuid
from ledger.runtime import Runtime


def account_routes(runtime: Runtime) -> list[Route]:
    async def create_account(request: Request) -> Response:
        body = await parse_body(request, AccountCreate)
        account = await runtime.store.create_account(body)
        return JSONResponse(account, status_code=201, headers={"location": f"/accounts/{account.id}"})

    async def get_account(request: Request) -> Response:
        account_id = parse_uuid(request.path_params["account_id"], AccountNotFound, "account")
        return JSONResponse(await runtime.store.get_account(account_id))

    return [
        Route("/accounts", create_account, methods=["POST"]),
        Route("/accounts/{account_id}", get_account, methods=["GET"]),
    ]
