"""Tracing's switch (the OTEL_* variables), what it stores and what log lines gain while it is on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastmicro import tracing
from fastmicro.testing.plugin import DatabaseFactory


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_when_an_endpoint_is_set_and_nothing_turns_it_off(environ: dict[str, str], on: bool) -> None:
    assert tracing.wanted(environ) is on


def test_both_otlp_protocols_are_honoured() -> None:
    grpc = tracing._otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    http = tracing._otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert "grpc" in type(grpc).__module__
    assert "http" in type(http).__module__
    with pytest.raises(ValueError, match="http/protobuf or grpc"):
        tracing._otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"})
    grpc.shutdown()
    http.shutdown()


def test_off_nothing_is_stored_and_nothing_is_logged() -> None:
    assert tracing.TRACER is None
    assert tracing.current_carrier() is None
    assert tracing.configure_tracing("svc", environ={}) is False
    assert tracing.TRACER is None


@pytest.fixture
def on() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing("svc", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.disable_tracing()


def test_on_the_current_context_is_stored_continued_and_logged(on: InMemorySpanExporter) -> None:
    assert tracing.TRACER is not None
    with tracing.TRACER.start_as_current_span("emitting") as span:
        carrier = tracing.current_carrier()
        event = tracing.log_trace_ids(None, "info", {"event": "x"})
    context = span.get_span_context()
    assert carrier is not None
    assert carrier["traceparent"].split("-")[1:3] == [format(context.trace_id, "032x"), format(context.span_id, "016x")]
    assert event["trace_id"] == format(context.trace_id, "032x")
    assert event["span_id"] == format(context.span_id, "016x")
    with tracing.TRACER.start_as_current_span("consuming", context=tracing.context_from(carrier)):
        pass
    [_, child] = on.get_finished_spans()
    assert child.parent is not None
    assert child.parent.span_id == context.span_id
    assert tracing.context_from({}) is None
    assert "trace_id" not in tracing.log_trace_ids(None, "info", {"event": "outside any span"})


async def test_a_statement_is_a_span_inside_a_trace_and_none_outside_one(
    on: InMemorySpanExporter, database_factory: DatabaseFactory
) -> None:
    engine = create_async_engine(await database_factory("tracing"))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))  # a background loop's poll: no trace of its own
            assert tracing.TRACER is not None
            with tracing.TRACER.start_as_current_span("request"):
                await conn.execute(text("SELECT 2"))
    finally:
        await engine.dispose()
    statements = [span for span in on.get_finished_spans() if span.kind == SpanKind.CLIENT]
    assert statements
    request = next(span for span in on.get_finished_spans() if span.name == "request")
    assert request.context is not None
    assert all(span.context and span.context.trace_id == request.context.trace_id for span in statements)
