"""Structured logging: structlog over the standard library, and the request-context middleware."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING, cast

import structlog
from pydantic_core import to_json
from structlog.types import EventDict, Processor

from fastmicro import context, tracing
from fastmicro.asgi import StatusRecorder
from fastmicro.errors import unexpected_error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from fastmicro.settings import ServiceSettings

REQUEST_ID_HEADER = "x-request-id"
# An incoming id is echoed into logs and events, so only a short, printable one is trusted.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

log = structlog.get_logger(__name__)


def configure_logging(settings: ServiceSettings) -> None:
    """Render structlog events straight to stderr (JSON or console); stdlib logging goes through the same renderer.

    The project's own events skip the standard library entirely: no `LogRecord`, handler lock or
    second formatting pass, so a log line costs microseconds. Libraries that log through the
    standard library (uvicorn, SQLAlchemy, aio-pika) still come out as the same kind of line.
    Reconfiguring (a test's second app) swaps the level and the renderer in place.
    """
    _LINE.level = logging.getLevelNamesMapping()[settings.log_level]
    _LINE.renderer = _render_json if settings.log_format == "json" else _console_renderer()
    # trace_id and span_id beside the correlation id, only while tracing is on (call configure_tracing first).
    _LINE.trace_ids = tracing.TRACER is not None
    structlog.configure(
        processors=[
            _LINE.drop_below_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            _TIMESTAMP,
            _LINE.render,
        ],
        logger_factory=_StderrLogger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),  # levels: drop_below_level
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                _TIMESTAMP,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _LINE.render],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    structlog.contextvars.bind_contextvars(service=settings.service_name)
    # uvicorn's access log repeats what RequestContextMiddleware logs with more context.
    logging.getLogger("uvicorn.access").disabled = True


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)
#: structlog's method names (`exception` logs at error level), as stdlib levels.
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class _StderrLogger:
    """Writes each rendered line to the process's stderr as it is now (tests swap it), one write per line."""

    def __init__(self, name: str | None = None, *_args: object) -> None:
        self.name = name or ""

    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _add_logger_name(logger: object, _method: str, event: EventDict) -> EventDict:
    name = getattr(logger, "name", "")
    if name:
        event["logger"] = name
    return event


def _render_json(_logger: object, _method: str, event: EventDict) -> str:
    if "exc_info" in event:
        event = structlog.processors.format_exc_info(_logger, _method, event)
    # pydantic-core's serialiser: compiled, and it knows UUIDs, datetimes and the like without help.
    return to_json(event, fallback=repr).decode()


def _console_renderer() -> Processor:
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


class _Line:
    """The level, renderer and trace fields in force: held here so that cached loggers follow a reconfiguration."""

    def __init__(self) -> None:
        self.level = logging.INFO
        self.renderer: Processor = _render_json
        self.trace_ids = False

    def drop_below_level(self, _logger: object, method: str, event: EventDict) -> EventDict:
        if _LEVELS.get(method, logging.INFO) < self.level:
            raise structlog.DropEvent
        return event

    def render(self, logger: object, method: str, event: EventDict) -> str:
        if self.trace_ids:
            event = tracing.log_trace_ids(logger, method, event)
        return cast("str", self.renderer(logger, method, event))


_LINE = _Line()


def _request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Binds `request_id`/`correlation_id` for logs and events, echoes `X-Request-ID`, logs each request.

    Pure ASGI rather than BaseHTTPMiddleware: contextvars set here stay visible to the endpoint,
    and it costs no extra task per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        token = context.correlation_id.set(request_id)
        started = time.perf_counter()
        response = StatusRecorder(send, [(REQUEST_ID_HEADER.encode(), request_id.encode())])

        with structlog.contextvars.bound_contextvars(request_id=request_id, correlation_id=request_id):
            try:
                await self.app(scope, receive, response)
            except Exception as error:
                # Answered here rather than by Starlette's outermost handler, so that the 500 carries
                # the request id and its log line is bound to the request.
                if response.started:
                    raise
                log.error("unhandled_error", method=scope["method"], path=scope["path"], exc_info=error)
                await unexpected_error_response()(scope, receive, response)
            finally:
                context.correlation_id.reset(token)
                log.info(
                    "http_request",
                    method=scope["method"],
                    path=scope["path"],
                    status=response.status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
