"""A scrape's text: every metric of this process, or of all `serve --workers N` processes, labelled by service.

`serve --workers N` shares one port among N processes, so a scrape reaches one of them at random:
with N > 1 the command points `PROMETHEUS_MULTIPROC_DIR` at a directory of its own before the
processes start (prometheus_client's multiprocess mode: each keeps its values in a file there), and
whichever process answers sums them all. The `worker` command is a process apart, with its own
port (`WORKER_METRICS_PORT`): `serve_worker_metrics` answers there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Metric, generate_latest, multiprocess
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_REQUEST_LIMIT = 16 * 1024
_REQUEST_TIMEOUT = 5.0


class _ServiceLabelled(Collector):
    """`source`'s metrics with `service="<name>"` on every sample."""

    def __init__(self, source: Collector | CollectorRegistry, service: str) -> None:
        self._source = source
        self._service = service

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample._replace(labels={"service": self._service, **sample.labels}) for sample in family.samples
            ]
            yield labelled


def registry_for(service: str) -> CollectorRegistry:
    """What a scrape of this process renders: its own metrics, or every process's in multiprocess mode."""
    source: Collector | CollectorRegistry = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ServiceLabelled(source, service))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def process_exited() -> None:
    """Drop this process's live gauges (its pool in use) from the sum, in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[None]:
    """For `serve --workers N`: the processes about to start share a fresh directory for their values.

    A directory given in the environment is emptied first (values of an earlier run would be summed in).
    """
    given = os.environ.get(MULTIPROC_ENV)
    path = given or tempfile.mkdtemp(prefix="fastmicro-metrics-")
    if given:
        for entry in os.scandir(path):
            if entry.name.endswith(".db"):
                os.unlink(entry.path)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(path, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)


@contextlib.asynccontextmanager
async def serve_worker_metrics(service: str, host: str, port: int, token: str | None) -> AsyncIterator[int | None]:
    """`GET /metrics` of a `worker` process on `host:port`; yields the bound port, or None when it cannot bind.

    A plain asyncio server (HTTP/1.0, one request per connection): the scraper is its only client,
    and the worker needs no web framework. A port in use is logged, never fatal: the worker's
    roles matter more than its figures.
    """
    registry = registry_for(service)
    expected = f"Bearer {token}".encode() if token else None

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, content_type = _respond(head, registry, expected)
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that sends no request, or too much of one: the connection is closed
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(answer, host, port, limit=_REQUEST_LIMIT)
    except OSError as error:
        log.error("worker_metrics_unavailable", host=host, port=port, error=str(error))
        yield None
        return
    bound = int(server.sockets[0].getsockname()[1])
    log.info("worker_metrics_serving", host=host, port=bound)
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()


def _respond(head: bytes, registry: CollectorRegistry, expected: bytes | None) -> tuple[str, bytes, str]:
    request_line, _, header_block = head.partition(b"\r\n")
    parts = request_line.split()
    if len(parts) != 3 or parts[0] != b"GET" or parts[1].split(b"?")[0] != b"/metrics":
        return "404 Not Found", b"not found\n", "text/plain"
    if expected is not None:
        authorization = b""
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                authorization = value.strip()
        if not hmac.compare_digest(authorization, expected):
            return "401 Unauthorized", b"the metrics token is required\n", "text/plain"
    return "200 OK", render(registry), CONTENT_TYPE_LATEST
