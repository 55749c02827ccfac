"""The error hierarchy and its rendering as RFC 9457 problem details.

Services raise `AppError` subclasses with a stable `code`; the handlers registered by
`install_error_handlers` turn them, FastAPI's own errors and unexpected faults into
`application/problem+json` responses. Nothing internal ever reaches a client.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar, cast

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"

log = structlog.get_logger(__name__)


class AppError(Exception):
    """Base of every error a client may see. Subclasses fix `status` and a default `code`."""

    status: ClassVar[int] = 500
    code: str = "internal_error"
    detail: str = "An unexpected error occurred"

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        if detail is not None:
            self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra
        super().__init__(self.detail)

    def to_problem(self) -> dict[str, Any]:
        return problem(self.status, self.detail, self.code, **self.extra)

    def headers(self) -> dict[str, str]:
        """Response headers the error implies (a 429's Retry-After, say)."""
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}


class NotFoundError(AppError):
    status = 404
    code = "not_found"
    detail = "Resource not found"


class ConflictError(AppError):
    status = 409
    code = "conflict"
    detail = "The request conflicts with the current state"


class ValidationError(AppError):
    status = 422
    code = "validation_error"
    detail = "The request is not valid"


class AuthenticationError(AppError):
    status = 401
    code = "not_authenticated"
    detail = "Authentication required"


class AuthorizationError(AppError):
    status = 403
    code = "forbidden"
    detail = "Not allowed"


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    detail = "A dependency is unavailable; try again later"


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them (documented in OpenAPI)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the problem statuses it may answer, for the OpenAPI document."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase, "content": {PROBLEM_CONTENT_TYPE: {}}}
        for status in statuses
    }


def problem(status: int, detail: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_CONTENT_TYPE, headers=headers)


_HTTP_CODES = {
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    exc = cast("AppError", exc)
    return problem_response(exc.to_problem(), exc.headers() or None)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    exc = cast("StarletteHTTPException", exc)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 400:
        # FastAPI and Starlette answer 400 to a body they cannot read at all (not UTF-8, JSON nested
        # too deep, a broken multipart form); the contract calls malformed input 422, as FastAPI
        # already answers to a JSON syntax error.
        errors = [{"loc": ["body"], "msg": detail, "type": "body_unreadable"}]
        return problem_response(problem(422, "The request is not valid", "validation_error", errors=errors))
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
    return problem_response(problem(status, detail, code), dict(exc.headers) if exc.headers else None)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    exc = cast("RequestValidationError", exc)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors()
    ]
    return problem_response(problem(422, "The request is not valid", "validation_error", errors=errors))


def unexpected_error_response() -> JSONResponse:
    """A 500 problem that says nothing of the fault: the details go to the log only."""
    return problem_response(problem(500, "An unexpected error occurred", "internal_error"))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled_error",
        method=request.method,
        path=request.url.path,
        error_type=type(exc).__name__,
        exc_info=exc,
    )
    return unexpected_error_response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
