"""Prometheus metrics of the kernel's moving parts, and the middleware that times HTTP requests."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from fastmicro.asgi import StatusRecorder

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Events published from the outbox and confirmed.")
OUTBOX_PUBLISH_FAILURES = Counter("outbox_publish_failures_total", "Outbox batches that failed to publish.")
# Refreshed from the database when /metrics is scraped; they keep their last value while it is away.
OUTBOX_LAG = Gauge("outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none).")
OUTBOX_PENDING = Gauge("outbox_pending", "Unpublished outbox rows.")
RETENTION_PURGED = Counter(
    "retention_purged_rows_total", "Rows deleted once past their retention, by table.", ["table"]
)


class MetricsMiddleware:
    """Labels by route template (`/users/{user_id}`), never by raw path, to bound cardinality."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response = StatusRecorder(send)
        try:
            await self.app(scope, receive, response)
        finally:
            route = getattr(scope.get("route"), "path", "<unmatched>")
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(response.status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)


CONSUMER_MESSAGES = Counter(
    "consumer_messages_total", "Messages taken by event consumers, by outcome.", ["event_type", "outcome"]
)
