"""RequestContextMiddleware: one request id per request, echoed, bound to logs and to the context."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import httpx
import pytest
import structlog
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from fastmicro import context, tracing
from fastmicro.events import DomainEvent, Envelope
from fastmicro.logging import configure_logging
from fastmicro.settings import ServiceSettings
from fastmicro.testing import app_client
from fastmicro.web import create_app

router = APIRouter()


class Pinged(DomainEvent):
    type: ClassVar[str] = "Pinged"
    source: ClassVar[str] = "kernel-test"


@router.get("/context")
async def current_context() -> dict[str, str | None]:
    return {"correlation_id": context.correlation_id.get()}


@router.post("/ping")
async def ping() -> dict[str, str | None]:
    return {"correlation_id": Envelope.wrap(Pinged()).correlation_id}


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError("boom")


class RecordedEvents:
    """The JSON log lines the app wrote to stderr, parsed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def named(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self._capsys.readouterr().err.splitlines() if line.startswith("{")]
        return [entry for entry in lines if entry.get("event") == event]


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """`create_app` reconfigures the root logger; leave it as the test found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def app(kernel_settings: ServiceSettings) -> FastAPI:
    settings = kernel_settings.model_copy(update={"log_format": "json"})
    return create_app(settings, title="logging", routers=[router], roles=lambda _runtime: ())


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as client:
        yield client


@pytest.fixture
def recorded(app: FastAPI, capsys: pytest.CaptureFixture[str]) -> RecordedEvents:
    return RecordedEvents(capsys)


@pytest.mark.parametrize("request_id", ["req-1", "0f3c:9a.B_7-x", "r" * 128])
async def test_a_valid_request_id_is_echoed(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": request_id})

    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["r" * 129, "has space", "line\nbreak", "semi;colon", "<script>"],
    ids=["too-long", "space", "newline", "semicolon", "markup"],
)
async def test_an_invalid_request_id_is_replaced_by_a_fresh_uuid(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": request_id})

    echoed = response.headers["x-request-id"]
    assert echoed != request_id
    assert str(uuid.UUID(echoed)) == echoed


async def test_a_request_id_with_a_trailing_newline_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "abc\n"})

    echoed = response.headers["x-request-id"]
    assert str(uuid.UUID(echoed)) == echoed


async def test_a_missing_request_id_is_generated_per_request(client: httpx.AsyncClient) -> None:
    first = (await client.get("/health/live")).headers["x-request-id"]
    second = (await client.get("/health/live")).headers["x-request-id"]

    assert uuid.UUID(first) != uuid.UUID(second)


async def test_correlation_id_is_the_request_id_during_the_request_and_reset_after(
    client: httpx.AsyncClient,
) -> None:
    assert context.correlation_id.get() is None

    response = await client.get("/context", headers={"X-Request-ID": "req-ctx-1"})

    assert response.json() == {"correlation_id": "req-ctx-1"}
    assert context.correlation_id.get() is None


async def test_a_generated_request_id_is_the_correlation_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/context")

    assert response.json()["correlation_id"] == response.headers["x-request-id"]


async def test_the_request_log_binds_the_request_id(client: httpx.AsyncClient, recorded: RecordedEvents) -> None:
    await client.get("/context", headers={"X-Request-ID": "req-log-1"})

    [entry] = recorded.named("http_request")
    assert entry["request_id"] == entry["correlation_id"] == "req-log-1"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/context", 200)


async def test_events_emitted_by_a_request_carry_its_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/ping", headers={"X-Request-ID": "req-event-1"})

    assert response.json() == {"correlation_id": "req-event-1"}


async def test_json_logs_are_one_object_per_line_with_the_request_id(
    kernel_settings: ServiceSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = kernel_settings.model_copy(update={"log_format": "json"})
    async with app_client(create_app(settings, title="json-logs", roles=lambda _runtime: ())) as client:
        await client.get("/health/live", headers={"X-Request-ID": "req-json-1"})

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [entry] = [line for line in lines if line["event"] == "http_request"]
    assert entry["request_id"] == "req-json-1"
    assert entry["service"] == "kernel-test"
    assert entry["level"] == "info"
    assert entry["timestamp"].endswith("Z")


async def test_a_500_response_echoes_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/crash", headers={"X-Request-ID": "req-500"})

    assert response.status_code == 500
    assert response.headers.get("x-request-id") == "req-500"


async def test_the_unhandled_error_log_binds_the_request_id(
    client: httpx.AsyncClient, recorded: RecordedEvents
) -> None:
    await client.get("/crash", headers={"X-Request-ID": "req-crash"})

    [entry] = recorded.named("unhandled_error")
    assert entry.get("request_id") == "req-crash"


def test_levels_and_format_follow_each_configuration_even_for_cached_loggers(
    kernel_settings: ServiceSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """structlog caches each logger on first use: a later `configure_logging` must still apply to it."""
    logger = structlog.get_logger("fastmicro.test-levels")
    configure_logging(kernel_settings.model_copy(update={"log_format": "json", "log_level": "INFO"}))
    logger.debug("hidden")
    logger.info("shown", n=1)
    configure_logging(kernel_settings.model_copy(update={"log_format": "json", "log_level": "DEBUG"}))
    logger.debug("now_shown")
    configure_logging(kernel_settings.model_copy(update={"log_format": "console", "log_level": "WARNING"}))
    logger.info("hidden_again")
    logger.warning("console_line")

    lines = capsys.readouterr().err.splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(e["event"], e["level"], e["logger"]) for e in events] == [
        ("shown", "info", "fastmicro.test-levels"),
        ("now_shown", "debug", "fastmicro.test-levels"),
    ]
    [console] = [line for line in lines if not line.startswith("{")]  # hidden_again was dropped
    assert "console_line" in console
    assert "warning" in console


def test_standard_library_records_come_out_as_the_same_json_lines(
    kernel_settings: ServiceSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(kernel_settings.model_copy(update={"log_format": "json", "log_level": "INFO"}))
    with structlog.contextvars.bound_contextvars(request_id="req-stdlib"):
        logging.getLogger("some.library").warning("disk %s", "full")

    [entry] = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert (entry["event"], entry["level"], entry["logger"]) == ("disk full", "warning", "some.library")
    assert entry["request_id"] == "req-stdlib"
    assert entry["service"] == kernel_settings.service_name


async def test_traced_the_request_is_a_server_span_and_its_log_line_names_it(
    kernel_settings: ServiceSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing("kernel-test", exporter=exporter)
    try:
        settings = kernel_settings.model_copy(update={"log_format": "json"})
        app = create_app(settings, title="traced", routers=[router], roles=lambda _runtime: ())
        async with app_client(app) as client:
            await client.get("/health/live")
            await client.get("/context", headers={"X-Request-ID": "req-traced"})
    finally:
        tracing.disable_tracing()

    [server] = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]  # not the probe's
    assert server.name == "GET /context"
    assert server.context is not None
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [entry] = [line for line in lines if line["event"] == "http_request" and line.get("request_id") == "req-traced"]
    assert entry["trace_id"] == format(server.context.trace_id, "032x")
    assert entry["correlation_id"] == "req-traced"
    assert "span_id" in entry
