"""create_app's operations routes: liveness, readiness against real servers, Prometheus metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastmicro.outbox import outbox_table
from fastmicro.settings import ServiceSettings
from fastmicro.testing import TcpProxy, TestServers, app_client
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory
from fastmicro.uow import UnitOfWork
from fastmicro.web import RuntimeDep, create_app

NO_LAG = {"outbox_lag_seconds": 0.0, "outbox_pending": 0}
OK = {"status": "ok", "checks": {"database": "ok", "broker": "ok"}, "details": NO_LAG}
DEGRADED = {"status": "degraded", "checks": {"database": "ok", "broker": "down"}, "details": NO_LAG}
DOWN = {"status": "down", "checks": {"database": "down", "broker": "ok"}}  # no database: no outbox figures

router = APIRouter()


@router.get("/things/{thing_id}")
async def get_thing(thing_id: str) -> dict[str, str]:
    return {"id": thing_id}


@router.get("/database-time")
async def database_time(runtime: RuntimeDep) -> dict[str, str]:
    async with UnitOfWork(runtime.session_factory) as uow:
        now = await uow.session.scalar(text("SELECT now()::text"))
    return {"now": str(now)}


@pytest.fixture
async def client(kernel_settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose database and broker are never reached: for the routes that need neither."""
    async with app_client(create_app(kernel_settings, title="web", routers=[router], roles=lambda _: ())) as client:
        yield client


async def test_live_answers_without_any_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def requests_total(exposition: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "http_requests_total" and labels.items() <= sample.labels.items()
    )


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    first, second = f"t-{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"
    for thing_id in (first, second):
        assert (await client.get(f"/things/{thing_id}")).status_code == 200

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    labels = {"method": "GET", "route": "/things/{thing_id}", "status": "200"}
    assert requests_total(response.text, **labels) - requests_total(before, **labels) == 2
    assert first not in response.text
    assert second not in response.text


async def test_metrics_do_not_label_unmatched_paths_by_their_raw_path(client: httpx.AsyncClient) -> None:
    path = f"/no-such-{uuid.uuid4().hex}"
    before = (await client.get("/metrics")).text

    assert (await client.get(path)).status_code == 404
    after = (await client.get("/metrics")).text

    assert path not in after
    assert requests_total(after, status="404") - requests_total(before, status="404") == 1


@dataclass
class ProxiedApp:
    client: httpx.AsyncClient
    database: TcpProxy
    broker: TcpProxy
    direct: AsyncEngine  # the app's database, not through the proxy: for setting the scene


@pytest.fixture
async def proxied(
    database_factory: DatabaseFactory, test_servers: TestServers, tcp_proxy: ProxyFactory, amqp_namespace: str
) -> AsyncIterator[ProxiedApp]:
    """An app (with an outbox) that reaches PostgreSQL and RabbitMQ only through proxies the test can cut."""
    database_url = await database_factory("health")
    direct = create_async_engine(database_url)
    async with direct.begin() as conn:
        await conn.run_sync(outbox_table.create)
    database = await tcp_proxy(database_url)
    broker = await tcp_proxy(test_servers.amqp_url)
    settings = ServiceSettings(
        service_name="kernel-test",
        environment="test",
        database_url=database.url_for(database_url),
        amqp_url=broker.url_for(test_servers.amqp_url),
        amqp_namespace=amqp_namespace,
        db_connect_timeout=1.0,
        _env_file=None,
    )
    async with app_client(create_app(settings, title="health", routers=[router], roles=lambda _: ())) as client:
        yield ProxiedApp(client, database, broker, direct)
        # Leave with both up, so that the app's shutdown does not wait on a dead link.
        await database.restore()
        await broker.restore()
    await direct.dispose()


async def ready_becomes(client: httpx.AsyncClient, status: int, body: dict[str, Any], within: float = 15.0) -> None:
    """Poll /health/ready until it answers `status` with `body`; fail with the last answer on timeout."""
    last: tuple[int, Any] = (0, None)
    try:
        async with asyncio.timeout(within):
            while True:
                response = await client.get("/health/ready")
                last = (response.status_code, response.json())
                if last == (status, body):
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"/health/ready stayed {last}, expected {(status, body)} within {within}s")


async def test_ready_is_ok_when_both_answer(proxied: ProxiedApp) -> None:
    # The first check also makes the first connections, each within the check's timeout: waited for.
    await ready_becomes(proxied.client, 200, OK)


async def test_ready_is_degraded_without_the_broker_and_recovers(proxied: ProxiedApp) -> None:
    await ready_becomes(proxied.client, 200, OK)

    await proxied.broker.cut()
    await ready_becomes(proxied.client, 200, DEGRADED)

    await proxied.broker.restore()
    await ready_becomes(proxied.client, 200, OK)


async def test_ready_is_down_without_the_database_and_recovers(proxied: ProxiedApp) -> None:
    await ready_becomes(proxied.client, 200, OK)

    await proxied.database.cut()
    await ready_becomes(proxied.client, 503, DOWN)
    assert (await proxied.client.get("/health/live")).status_code == 200

    await proxied.database.restore()
    await ready_becomes(proxied.client, 200, OK)


async def test_ready_is_down_when_both_are_away(proxied: ProxiedApp) -> None:
    await ready_becomes(proxied.client, 200, OK)

    await proxied.database.cut()
    await proxied.broker.cut()

    await ready_becomes(proxied.client, 503, {"status": "down", "checks": {"database": "down", "broker": "down"}})


async def test_ready_reports_a_broker_that_was_never_reached(proxied: ProxiedApp) -> None:
    await proxied.broker.cut()  # before the first check: no connection has been made yet

    await ready_becomes(proxied.client, 200, DEGRADED)  # the database's first connect may take a check or two


async def test_a_request_while_the_database_is_down_is_a_503_problem(proxied: ProxiedApp) -> None:
    assert (await proxied.client.get("/database-time")).status_code == 200

    await proxied.database.cut()
    response = await proxied.client.get("/database-time")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "service_unavailable"
    await proxied.database.restore()
    assert (await proxied.client.get("/database-time")).status_code == 200


def gauge(exposition: str, name: str) -> float:
    [value] = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    ]
    return value


async def test_an_empty_outbox_has_no_lag(proxied: ProxiedApp) -> None:
    ready = await proxied.client.get("/health/ready")
    metrics = (await proxied.client.get("/metrics")).text

    assert ready.json()["details"] == {"outbox_lag_seconds": 0, "outbox_pending": 0}
    assert gauge(metrics, "outbox_lag_seconds") == 0
    assert gauge(metrics, "outbox_pending") == 0


async def test_the_lag_is_the_age_of_the_oldest_unpublished_row(proxied: ProxiedApp) -> None:
    async with proxied.direct.begin() as conn:
        await conn.execute(insert(outbox_table).values(id=uuid.uuid4(), routing_key="kernel.ThingHappened", payload={}))
        await conn.execute(insert(outbox_table).values(id=uuid.uuid4(), routing_key="kernel.Done", payload={}))
        await conn.execute(text("UPDATE outbox SET created_at = now() - interval '30 seconds'"))
        await conn.execute(text("UPDATE outbox SET published_at = now() WHERE routing_key = 'kernel.Done'"))

    ready = await proxied.client.get("/health/ready")
    metrics = (await proxied.client.get("/metrics")).text

    assert ready.status_code == 200
    body = ready.json()
    assert (body["status"], body["checks"]) == ("ok", OK["checks"])  # lag never changes the status
    assert body["details"]["outbox_lag_seconds"] >= 30
    assert body["details"]["outbox_pending"] == 1
    assert gauge(metrics, "outbox_lag_seconds") >= 30
    assert gauge(metrics, "outbox_pending") == 1

    # Without the database the scrape still answers, with the figures it had.
    await proxied.database.cut()
    await ready_becomes(proxied.client, 503, DOWN)
    response = await proxied.client.get("/metrics")
    assert response.status_code == 200
    assert gauge(response.text, "outbox_lag_seconds") >= 30
    assert gauge(response.text, "outbox_pending") == 1


async def test_a_service_without_an_outbox_reports_no_outbox_figures(
    database_factory: DatabaseFactory, test_servers: TestServers, amqp_namespace: str
) -> None:
    database_url = await database_factory("health_no_outbox")
    direct = create_async_engine(database_url)
    async with direct.begin() as conn:  # a table it does have is still not the service's outbox
        await conn.run_sync(outbox_table.create)
        await conn.execute(insert(outbox_table).values(id=uuid.uuid4(), routing_key="kernel.Pending", payload={}))
    await direct.dispose()
    settings = ServiceSettings(
        service_name="kernel-test",
        environment="test",
        database_url=database_url,
        amqp_url=test_servers.amqp_url,
        amqp_namespace=amqp_namespace,
        _env_file=None,
    )
    async with app_client(create_app(settings, title="no-outbox", roles=lambda _: (), outbox=False)) as client:
        response = await client.get("/health/ready")

    assert (response.status_code, response.json()) == (200, {"status": "ok", "checks": OK["checks"]})


async def test_an_outbox_not_migrated_yet_leaves_the_figures_out_not_the_status(
    database_factory: DatabaseFactory, test_servers: TestServers, amqp_namespace: str
) -> None:
    database_url = await database_factory("health_no_table")  # the app expects an outbox; the table is not there
    settings = ServiceSettings(
        service_name="kernel-test",
        environment="test",
        database_url=database_url,
        amqp_url=test_servers.amqp_url,
        amqp_namespace=amqp_namespace,
        _env_file=None,
    )
    async with app_client(create_app(settings, title="no-table", roles=lambda _: ())) as client:
        response = await client.get("/health/ready")
        scrape = await client.get("/metrics")

    assert (response.status_code, response.json()) == (200, {"status": "ok", "checks": OK["checks"]})
    assert scrape.status_code == 200
