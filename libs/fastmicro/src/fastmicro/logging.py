"""Structured logging: structlog over the standard library, and the request-context middleware."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING

import structlog

from fastmicro import context
from fastmicro.errors import unexpected_error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from fastmicro.settings import ServiceSettings

REQUEST_ID_HEADER = "x-request-id"
# An incoming id is echoed into logs and events, so only a short, printable one is trusted.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

log = structlog.get_logger(__name__)


def configure_logging(settings: ServiceSettings) -> None:
    """Route structlog and stdlib logging through one renderer (JSON or console)."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if settings.log_format == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    structlog.contextvars.bind_contextvars(service=settings.service_name)
    # uvicorn's access log repeats what RequestContextMiddleware logs with more context.
    logging.getLogger("uvicorn.access").disabled = True


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
        status = 500
        response_started = False
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id, correlation_id=request_id):
            try:
                await self.app(scope, receive, send_with_request_id)
            except Exception as error:
                # Answered here rather than by Starlette's outermost handler, so that the 500 carries
                # the request id and its log line is bound to the request.
                if response_started:
                    raise
                log.error("unhandled_error", method=scope["method"], path=scope["path"], exc_info=error)
                await unexpected_error_response()(scope, receive, send_with_request_id)
            finally:
                context.correlation_id.reset(token)
                log.info(
                    "http_request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
