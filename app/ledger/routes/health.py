"""Kubernetes probes: live (process only), ready (traffic), startup (pool and schema)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.routes._http import JSONResponse
from ledger.runtime import Runtime

_OK = b'{"status":"ok"}'


def health_routes(runtime: Runtime) -> list[Route]:
    async def live(_: Request) -> Response:
        # Answers from the process alone: a database outage must not restart every pod.
        return Response(_OK, media_type="application/json")

    async def ready(_: Request) -> Response:
        reason = await runtime.readiness_failure()
        if reason:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return Response(_OK, media_type="application/json")

    async def startup(_: Request) -> Response:
        if not runtime.started:
            return JSONResponse({"status": "starting", "reason": runtime.startup_failure}, status_code=503)
        return Response(_OK, media_type="application/json")

    return [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/health/startup", startup, methods=["GET"]),
    ]
