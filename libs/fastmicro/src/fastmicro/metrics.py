"""Prometheus metrics of the kernel's moving parts, and the middleware that times HTTP requests.

Every name here is what docs/operations.md, the Grafana dashboard and the alert rules use
(deploy/monitoring/, checked by deploy/tests/test_monitoring.py). The `service`
label is added when a scrape is rendered (fastmicro.exposition), never on the hot path.
Gauges say how several processes of one `serve --workers N` combine (multiprocess mode).
"""

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
OUTBOX_BATCH_SIZE = Histogram(
    "outbox_batch_size",
    "Rows a relay batch claimed.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
# Refreshed from the database when /metrics is scraped; they keep their last value while it is away.
OUTBOX_LAG = Gauge(
    "outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none).", multiprocess_mode="mostrecent"
)
OUTBOX_PENDING = Gauge("outbox_pending", "Unpublished outbox rows.", multiprocess_mode="mostrecent")
#: Refreshed from the broker (a passive declare per queue) when /metrics is scraped: fastmicro.queue_depth.
QUEUE_MESSAGES = Gauge(
    "consumer_queue_messages",
    "Messages ready in a consumer's dead-letter or retry queues.",
    ["queue", "kind"],
    multiprocess_mode="mostrecent",
)
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use", "Pooled database connections checked out now.", multiprocess_mode="livesum"
)
RETENTION_PURGED = Counter(
    "retention_purged_rows_total", "Rows deleted once past their retention, by table.", ["table"]
)


#: Methods labelled as themselves; any other is `OTHER`, so a client cannot grow the series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Labels by route template (`/users/{user_id}`), never by raw path, to bound cardinality.

    Each (method, route, status) keeps its two series: `labels()` is looked up once, not per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

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
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            key = (method, route, response.status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (
                    HTTP_REQUESTS.labels(method, route, str(response.status)),
                    HTTP_LATENCY.labels(method, route),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)


CONSUMER_MESSAGES = Counter(
    "consumer_messages_total", "Messages taken by event consumers, by outcome.", ["event_type", "outcome"]
)
CONSUMER_HANDLER_DURATION = Histogram(
    "consumer_handler_duration_seconds",
    "Time from taking a message to its outcome settled (inbox, handler, commit, ack), by event type.",
    ["event_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
