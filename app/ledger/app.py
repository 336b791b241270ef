"""Builds the ASGI application: routes, then plain ASGI middleware around them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.routing import Router
from starlette.types import ASGIApp

from ledger.client_address import ClientAddress
from ledger.config import Settings
from ledger.middleware.errors import ErrorMiddleware
from ledger.middleware.headers import ResponseHeadersMiddleware
from ledger.middleware.liveness import LivenessMiddleware
from ledger.middleware.observe import ObserveMiddleware
from ledger.middleware.tracing import TracingMiddleware
from ledger.ratelimit import RateLimitMiddleware, TokenBuckets
from ledger.routes.accounts import account_routes
from ledger.routes.feed import feed_routes
from ledger.routes.health import health_routes
from ledger.routes.meta import meta_routes
from ledger.routes.transfers import transfer_routes
from ledger.runtime import Runtime


def create_app(
    settings: Settings, runtime: Runtime | None = None, *, server_adds_process_headers: bool = False
) -> tuple[ASGIApp, Runtime]:
    """The ledger ASGI app and the runtime it drives (the server drains through it).

    `server_adds_process_headers`: the server writes `x-served-by` and the security headers
    on every response (see `ledger.server`), so the app does not add them again.
    """
    runtime = runtime or Runtime(settings)
    client_address = ClientAddress(settings.trusted_proxies)

    @contextlib.asynccontextmanager
    async def lifespan(_: Router) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    router = Router(
        routes=[
            *health_routes(runtime),
            *account_routes(runtime),
            *transfer_routes(runtime),
            *meta_routes(runtime),
            *feed_routes(runtime, client_address),
        ],
        lifespan=lifespan,
        redirect_slashes=False,
    )
    # Outermost first on the way in: headers wrap everything, so even a crash's 500 carries
    # x-request-id and x-served-by; errors are rendered innermost, inside the metrics.
    app: ASGIApp = ErrorMiddleware(router, runtime.database_down)
    if settings.rate_limit_per_minute > 0:
        buckets = TokenBuckets(
            settings.rate_limit_per_minute,
            lambda: runtime.cluster.size,
            max_clients=settings.rate_limit_max_clients,
        )
        app = RateLimitMiddleware(app, buckets, client_address, runtime.metrics.rate_limited.inc)
    observe = ObserveMiddleware(app, runtime.metrics)
    # Around the access log and every answer (errors' too): trace ids in each log line of a
    # request and `traceparent` on each response.
    app = TracingMiddleware(observe)
    headers = ResponseHeadersMiddleware(
        app,
        settings.served_by,
        lambda: runtime.draining,
        server_adds_process_headers=server_adds_process_headers,
    )
    # The kubelet's most frequent question, answered first with the stack's own headers,
    # trace and metrics (see the module).
    app = LivenessMiddleware(headers, headers=headers, observe=observe)
    return app, runtime
