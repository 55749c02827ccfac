"""`create_app`: one FastAPI application per service, with everything the kernel promises around it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import os
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr
from sqlalchemy import text
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from fastmicro.asyncapi import service_document
from fastmicro.consumer import EventConsumer
from fastmicro.edge import SecurityHeadersMiddleware
from fastmicro.errors import AuthenticationError, install_error_handlers
from fastmicro.exposition import process_exited, registry_for, render
from fastmicro.idempotency import install_idempotency
from fastmicro.logging import RequestContextMiddleware, configure_logging
from fastmicro.methods import MethodNotAllowedMiddleware
from fastmicro.metrics import OUTBOX_LAG, OUTBOX_PENDING, MetricsMiddleware
from fastmicro.openapi import document_problems
from fastmicro.outbox import OutboxLag, outbox_lag
from fastmicro.queue_depth import Kind, QueueDepths
from fastmicro.revocation import RevocationList
from fastmicro.runtime import BackgroundRole, RolesFactory, Runtime
from fastmicro.tracing import configure_tracing, instrument_app

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
    roles: RolesFactory,
    routers: Sequence[APIRouter] = (),
    runtime: type[Runtime[Any]] = Runtime,
    outbox: bool = True,
    revocations: bool = False,
    description: str = "",
    version: str = "0.1.0",
) -> FastAPI:
    """Build a service's app: error handlers, request context, metrics, health, and its background roles.

    `runtime.from_settings(settings)` builds what the process holds (the service's Runtime subclass); `roles(runtime)`
    run for the life of the app unless `settings.serve_roles` is false, where a `worker` process of
    their own runs them. A service declares both once, in a `fastmicro.service.Service`.
    `outbox`: the service has the kernel's outbox table, so readiness and /metrics report its lag.
    `revocations`: the service records deleted users (fastmicro.revocation): their tokens get 401.
    """
    configure_tracing(settings.service_name)  # before logging: log lines then carry trace_id and span_id
    configure_logging(settings)
    if settings.environment == "production" and settings.metrics_token is None:
        raise RuntimeError("METRICS_TOKEN must be set in production: /metrics is for the cluster's scraper alone")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = held = runtime.from_settings(settings)
        api_roles: list[BackgroundRole] = []
        if revocations:
            held.revocations = revoked = RevocationList(
                held.engine,
                token_ttl=timedelta(seconds=settings.jwt_ttl_seconds),
                interval=settings.revocation_poll_seconds,
            )
            with contextlib.suppress(Exception):  # a database away: run() keeps trying, requests get 503
                await revoked.refresh()
            api_roles.append(revoked)
        background = roles(held) if settings.serve_roles else ()
        async with run_roles([*api_roles, *background]):
            gc.freeze()  # see fastmicro.cli.run_worker
            log.info("service_started", http_port=settings.http_port, pid=os.getpid())  # one per API process
            yield
        await held.close()
        process_exited()
        log.info("service_stopped")

    docs = settings.docs_enabled()  # off in production unless API_DOCS turns them on
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install_error_handlers(app)
    install_idempotency(app)
    document_problems(app)
    app.add_middleware(MethodNotAllowedMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.environment == "production")
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)  # its request id covers everything inside
    if settings.forwarded_allow_ips:
        # Outermost: the client address everything inside sees (logs, login throttling) is the
        # proxy's X-Forwarded-For only when the peer is one of these proxies.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.include_router(
        _operations_router(settings.service_name, roles, outbox=outbox, metrics_token=settings.metrics_token)
    )
    if docs:
        app.include_router(_asyncapi_router(settings.service_name, roles, title=title, version=version))
    for router in routers:
        app.include_router(router)
    instrument_app(app)  # a server span per request, outside every middleware (when tracing is on)
    return app


def _asyncapi_router(service: str, roles: RolesFactory, *, title: str, version: str) -> APIRouter:
    """`GET /asyncapi.json`: this service's part of docs/asyncapi.yaml, from its own code (off with /docs)."""
    router = APIRouter(tags=["operations"])
    built: list[dict[str, Any]] = []

    @router.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi(runtime: RuntimeDep) -> JSONResponse:
        if not built:  # its roles are built, never run: what they consume and where is all that is read
            topology = runtime.broker.topology
            built.append(service_document(service, roles(runtime), title=title, version=version, topology=topology))
        return JSONResponse(built[0])

    return router


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


def _operations_router(
    service: str, roles: RolesFactory, *, outbox: bool, metrics_token: SecretStr | None
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready", responses={503: {"description": "The database is down"}})
    async def ready(runtime: RuntimeDep) -> JSONResponse:
        database, broker = await asyncio.gather(_check_database(runtime), _check_broker(runtime))
        status = "down" if database == "down" else "degraded" if broker == "down" else "ok"
        body: dict[str, Any] = {"status": status, "checks": {"database": database, "broker": broker}}
        # Information only: a lagging outbox never changes the status (writes still succeed).
        lag = await _outbox_lag(runtime) if outbox and database == "ok" else None
        if lag is not None:
            body["details"] = {"outbox_lag_seconds": round(lag.seconds, 3), "outbox_pending": lag.pending}
        return JSONResponse(body, status_code=503 if status == "down" else 200)

    expected = f"Bearer {metrics_token.get_secret_value()}".encode() if metrics_token else None
    registry = registry_for(service)
    depths: list[QueueDepths] = []

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request, runtime: RuntimeDep) -> Response:
        if expected is not None and not hmac.compare_digest(
            request.headers.get("authorization", "").encode(), expected
        ):
            raise AuthenticationError("The metrics token is required", code="not_authenticated")
        if not depths:  # its consumers are built, never run: their queue names are all that is read
            depths.append(QueueDepths(runtime.broker, _letter_queues(roles(runtime)), timeout=_CHECK_TIMEOUT))
        lag, _ = await asyncio.gather(_outbox_lag(runtime) if outbox else _nothing(), depths[0].refresh())
        if lag is not None:  # otherwise the gauges keep their last value: the scrape never fails on it
            OUTBOX_LAG.set(lag.seconds)
            OUTBOX_PENDING.set(lag.pending)
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _letter_queues(roles: Sequence[BackgroundRole]) -> list[tuple[str, Kind]]:
    """The dead-letter and retry queues of the service's consumers."""
    queues: list[tuple[str, Kind]] = []
    for role in roles:
        if isinstance(role, EventConsumer):
            queues.append((role.dead_queue_name, "dead"))
            queues.extend((name, "retry") for name in role.retry_queue_names)
    return queues


async def _nothing() -> None:
    return None


async def _check_database(runtime: Runtime) -> Check:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT), runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        return "down"
    return "ok"


async def _outbox_lag(runtime: Runtime) -> OutboxLag | None:
    """The outbox lag, or None when it cannot be had quickly (database away or slow)."""
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            return await outbox_lag(runtime.engine)
    except Exception as error:  # noqa: BLE001 - a figure we cannot read is left out, never an error
        log.debug("outbox_lag_unavailable", error=str(error), error_type=type(error).__name__)
        return None


async def _check_broker(runtime: Runtime) -> Check:
    if runtime.broker.is_connected:
        return "ok"
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            await runtime.broker.connection()
    except Exception:  # noqa: BLE001 - any failure means not ready
        return "down"
    return "ok" if runtime.broker.is_connected else "down"
