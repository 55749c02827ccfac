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
from sqlalchemy import text

from fastmicro.settings import ServiceSettings
from fastmicro.testing import TcpProxy, TestServers, app_client
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory
from fastmicro.uow import UnitOfWork
from fastmicro.web import RuntimeDep, create_app

OK = {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
DEGRADED = {"status": "degraded", "checks": {"database": "ok", "broker": "down"}}
DOWN = {"status": "down", "checks": {"database": "down", "broker": "ok"}}

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


@pytest.fixture
async def proxied(
    database_factory: DatabaseFactory, test_servers: TestServers, tcp_proxy: ProxyFactory, amqp_namespace: str
) -> AsyncIterator[ProxiedApp]:
    """An app that reaches PostgreSQL and RabbitMQ only through proxies the test can cut."""
    database_url = await database_factory("health")
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
        yield ProxiedApp(client, database, broker)
        # Leave with both up, so that the app's shutdown does not wait on a dead link.
        await database.restore()
        await broker.restore()


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
    response = await proxied.client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == OK


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

    response = await proxied.client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == DEGRADED


async def test_a_request_while_the_database_is_down_is_a_503_problem(proxied: ProxiedApp) -> None:
    assert (await proxied.client.get("/database-time")).status_code == 200

    await proxied.database.cut()
    response = await proxied.client.get("/database-time")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "service_unavailable"
    await proxied.database.restore()
    assert (await proxied.client.get("/database-time")).status_code == 200
