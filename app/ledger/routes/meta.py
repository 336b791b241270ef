"""GET /metrics, /openapi.json and /cluster."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.openapi import build_openapi
from ledger.routes._http import JSONResponse
from ledger.runtime import Runtime

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def meta_routes(runtime: Runtime) -> list[Route]:
    document = build_openapi(runtime.settings.app_version)
    settings = runtime.settings

    async def metrics(_: Request) -> Response:
        return Response(runtime.metrics.render(), media_type=PROMETHEUS_TEXT)

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    async def cluster(_: Request) -> Response:
        return JSONResponse(
            {
                "self": {
                    "id": settings.instance_id,
                    "color": settings.color,
                    "version": settings.app_version,
                    "address": f"{settings.host}:{settings.port}",
                    "draining": runtime.draining,
                },
                "discovery": {
                    "mode": settings.discovery.mode,
                    "interval_seconds": settings.cluster_interval_seconds,
                    "error": runtime.cluster.source_error or None,
                },
                "size": runtime.cluster.size,
                "peers": runtime.cluster.describe(),
                "feed": {
                    "degraded": runtime.feed.degraded,
                    "error": runtime.feed.last_error or None,
                    "subscribers": runtime.feed.subscriber_count,
                    "delivered": runtime.feed.delivered,
                },
            }
        )

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/cluster", cluster, methods=["GET"]),
    ]
