"""`create_app`: one FastAPI application per service, with everything the kernel promises around it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from fastmicro.errors import install_error_handlers
from fastmicro.logging import RequestContextMiddleware, configure_logging
from fastmicro.metrics import MetricsMiddleware
from fastmicro.runtime import BackgroundRole, RolesFactory, Runtime, relay_only

if TYPE_CHECKING:
    from fastmicro.settings import ServiceSettings

log = structlog.get_logger(__name__)

Check = Literal["ok", "down"]

_CHECK_TIMEOUT = 2.0
_STOP_GRACE = 10.0


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    roles: RolesFactory = relay_only,
    description: str = "",
    version: str = "0.1.0",
) -> FastAPI:
    """Build a service's app: error handlers, request context, metrics, health, and its background roles.

    `roles(runtime)` run for the life of the app (by default the outbox relay alone);
    `python -m <svc> serve` therefore runs API, relay and consumers in one process.
    """
    configure_logging(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.from_settings(settings)
        app.state.runtime = runtime
        app.state.token_codec = runtime.tokens
        async with run_roles(roles(runtime)):
            log.info("service_started", http_port=settings.http_port)
            yield
        await runtime.close()
        log.info("service_stopped")

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)  # outermost: its request id covers everything
    app.include_router(_operations_router())
    for router in routers:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def run_roles(roles: Sequence[BackgroundRole]) -> AsyncIterator[None]:
    """Run `roles` as tasks; on exit ask each to stop and give them time to finish what they hold."""
    tasks = [asyncio.create_task(role.run(), name=type(role).__name__) for role in roles]
    try:
        yield
    finally:
        for role in roles:
            role.stop()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=_STOP_GRACE)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("role_failed", role=task.get_name(), error=repr(task.exception()))


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready", responses={503: {"description": "The database is down"}})
    async def ready(runtime: RuntimeDep) -> JSONResponse:
        database, broker = await asyncio.gather(_check_database(runtime), _check_broker(runtime))
        status = "down" if database == "down" else "degraded" if broker == "down" else "ok"
        body: dict[str, Any] = {"status": status, "checks": {"database": database, "broker": broker}}
        return JSONResponse(body, status_code=503 if status == "down" else 200)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _check_database(runtime: Runtime) -> Check:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT), runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        return "down"
    return "ok"


async def _check_broker(runtime: Runtime) -> Check:
    if runtime.broker.is_connected:
        return "ok"
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            await runtime.broker.connection()
    except Exception:  # noqa: BLE001 - any failure means not ready
        return "down"
    return "ok" if runtime.broker.is_connected else "down"
