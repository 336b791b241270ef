"""Token buckets per client address, sized to this instance's share of a cluster-wide limit.

`RATE_LIMIT_PER_MINUTE` is the limit for the whole cluster. Each instance enforces
`limit / live instances` (never below 1 per minute): a bucket holds that many tokens and
refills at that many per minute. So a burst through all instances gets at most the cluster
limit, and the sustained rate is the limit per minute.

Memory is bounded: buckets are kept in least-recently-used order, a bucket that has
refilled completely is dropped (a new one starts full, so nothing is lost), and at most
`max_clients` are kept whatever the traffic.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.client_address import ClientAddress
from ledger.errors import error_body

# Exact paths: a prefix would also exempt /health/anything and /metricsfoo.
EXEMPT_PATHS = frozenset({"/health/live", "/health/ready", "/health/startup", "/metrics"})


class TokenBuckets:
    def __init__(
        self,
        limit_per_minute: int,
        cluster_size: Callable[[], int],
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_per_minute = limit_per_minute
        self._cluster_size = cluster_size
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def capacity(self) -> float:
        """This instance's share: tokens per minute, and the burst size."""
        return max(1.0, self.limit_per_minute / max(1, self._cluster_size()))

    def take(self, key: str) -> float:
        """Spend one token for `key`: 0.0 if allowed, else seconds until a token is back."""
        now = self._clock()
        capacity = self.capacity
        per_second = capacity / 60.0
        tokens, at = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * per_second)
        self._evict_idle(now, capacity, per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / per_second

    def _evict_idle(self, now: float, capacity: float, per_second: float) -> None:
        buckets = self._buckets
        while len(buckets) >= self.max_clients:
            buckets.popitem(last=False)
        for _ in range(2):  # amortized: the oldest entries go once they are full again
            if not buckets:
                return
            oldest_key = next(iter(buckets))
            tokens, at = buckets[oldest_key]
            if tokens + (now - at) * per_second < capacity:
                return
            del buckets[oldest_key]


class RateLimitMiddleware:
    """429 with Retry-After and a JSON body once a client's bucket is empty."""

    def __init__(
        self,
        app: ASGIApp,
        buckets: TokenBuckets,
        client_address: ClientAddress,
        on_limited: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.client_address = client_address
        self._on_limited = on_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(self.client_address.key(scope))
        if wait <= 0.0:
            await self.app(scope, receive, send)
            return
        self._on_limited()
        body = error_body(
            "rate_limited",
            f"too many requests: the limit is {self.buckets.limit_per_minute} per minute per client",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
