"""Traces with OpenTelemetry: off unless the standard OTEL_* variables ask for them.

On when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise. The SDK reads
the rest itself: `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or `grpc`),
`OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_SERVICE_NAME` defaults to the service's name.

Off, `TRACER` stays None and every hot path pays one None check: no instrumentation is installed,
no context is stored with an outbox row, no header is added to a message.

Trace context travels as the W3C `traceparent`/`tracestate` pair: stored with an outbox row (and a
notification), carried by the relay into the AMQP headers, continued by the consumer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes
from structlog.types import EventDict

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

#: The kernel's tracer while tracing is on; None when off (the only thing a hot path looks at).
TRACER: Tracer | None = None
_provider: TracerProvider | None = None

#: The variables a deployment may set for tracing (read by this module or by the SDK), beside the settings.
ENVIRONMENT_VARIABLES = frozenset(
    {
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    }
)

#: What an HTTP server span is never made for: probes and the scraper.
EXCLUDED_URLS = "/health/live,/health/ready,/metrics"


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables turn tracing on."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter  # noqa: PLC0415 - only when tracing is on

        return GrpcExporter()
    if protocol in {"http/protobuf", "http"}:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter  # noqa: PLC0415 - only when tracing is on

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: http/protobuf or grpc")


def configure_tracing(
    service_name: str, *, exporter: SpanExporter | None = None, environ: Mapping[str, str] = os.environ
) -> bool:
    """Turn tracing on for this process if the environment asks (or `exporter` is given: tests). Once per process.

    Returns whether tracing is on. The database driver (asyncpg, under SQLAlchemy too) is
    instrumented here; each app's server spans by `instrument_app`.
    """
    global TRACER, _provider  # noqa: PLW0603 - one provider per process, as OpenTelemetry's global is
    if TRACER is not None:
        return True
    if exporter is None and not wanted(environ):
        return False
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor  # noqa: PLC0415 - only when tracing is on
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415 - only when tracing is on
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - only when tracing is on
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: PLC0415 - only when tracing is on

    attributes: dict[str, Any] = {}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service_name
    provider = TracerProvider(resource=Resource.create(attributes))  # the sampler: OTEL_TRACES_SAMPLER
    # Before any tracer is made (each keeps the sampler it was made with).
    provider.sampler = _StatementsInTraces(provider.sampler)
    if exporter is None:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(environ)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if exporter is None:
        trace.set_tracer_provider(provider)  # for any other library's spans: once per process, so not for a test's
    AsyncPGInstrumentor().instrument(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )
    _provider = provider
    TRACER = provider.get_tracer("fastmicro")
    return True


class _StatementsInTraces(Sampler):
    """No span for a statement outside any trace; the rest as `OTEL_TRACES_SAMPLER` says.

    The background loops poll (the revocation list every second, the sender's next due row,
    retention): without this, each poll would be a trace of one statement.
    """

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(  # noqa: PLR0917 - the SDK calls it so
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"StatementsInTraces{{{self._inner.get_description()}}}"


def disable_tracing() -> None:
    """Flush what is buffered and turn tracing off again (a test that turned it on, at its end)."""
    global TRACER, _provider
    if _provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor  # noqa: PLC0415 - only when tracing is on

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    _provider.shutdown()
    TRACER, _provider = None, None


def instrument_app(app: FastAPI) -> None:
    """A server span per HTTP request (not for the probes nor /metrics), when tracing is on."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: PLC0415 - only when tracing is on

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS)


def current_carrier() -> dict[str, str] | None:
    """The current trace context as `traceparent`/`tracestate`, to store with a row; None when off or none."""
    if TRACER is None:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None


def context_from(carrier: Mapping[str, Any] | None) -> Context | None:
    """The remote parent a stored or received `traceparent` names (None when there is none)."""
    if not carrier or "traceparent" not in carrier:
        return None
    return extract({key: str(value) for key, value in carrier.items() if key in {"traceparent", "tracestate"}})


def log_trace_ids(_logger: object, _method: str, event: EventDict) -> EventDict:
    """A structlog processor (installed only while tracing is on): `trace_id` and `span_id` of the current span."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event
