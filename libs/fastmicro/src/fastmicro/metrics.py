"""Prometheus metrics of the kernel's moving parts, and the middleware that times HTTP requests."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from fastmicro.asgi import StatusRecorder

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import ASGIApp, Receive, Scope, Send

#: prometheus_client's multiprocess mode: set, each process writes its metrics to files there.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

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
# With several API processes, the value of the process that answered the last scrape.
OUTBOX_LAG = Gauge(
    "outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none).", multiprocess_mode="mostrecent"
)
OUTBOX_PENDING = Gauge("outbox_pending", "Unpublished outbox rows.", multiprocess_mode="mostrecent")
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


@contextlib.contextmanager
def shared_by(processes: int) -> Iterator[None]:
    """Around starting `processes` API processes on one port: with more than one, every process writes
    its metrics to files in one directory (removed after) and /metrics adds them all up, whichever
    process answers the scrape. A directory set already (PROMETHEUS_MULTIPROC_DIR) is used as it is.
    """
    if processes == 1 or os.environ.get(MULTIPROCESS_DIR):
        yield
        return
    directory = tempfile.mkdtemp(prefix="fastmicro-metrics-")
    os.environ[MULTIPROCESS_DIR] = directory  # the processes uvicorn spawns inherit it
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR]
        shutil.rmtree(directory, ignore_errors=True)


def exposition() -> bytes:
    """The metrics in Prometheus' text format: this process's, or every process's in multiprocess mode."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        return generate_latest()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # the library is untyped here
    return generate_latest(registry)
