"""The users service when its broker or its database goes away (cut through a proxy of our own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from fastmicro.events import Envelope
from fastmicro.messaging import Broker
from fastmicro.migrations import upgrade_to_head
from fastmicro.testing import TestServers, app_client, catch_events
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory
from users.main import create_app

from .conftest import PASSWORD, make_settings, unique_email


@pytest.fixture
async def own_database(database_factory: DatabaseFactory) -> str:
    """A database no other app relays from, so only the app under test can publish its events."""
    url = await database_factory("users_faults")
    await upgrade_to_head("users:migrations", url)
    return url


async def wait_ready(client: httpx.AsyncClient, status: str, within: float = 15) -> dict[str, object]:
    async with asyncio.timeout(within):
        while True:
            body: dict[str, object] = (await client.get("/health/ready")).json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.1)


def created_user(user_id: str) -> Callable[[Envelope], bool]:
    return lambda envelope: envelope.data.get("user_id") == user_id


async def test_registration_succeeds_while_the_broker_is_down_and_its_event_follows(
    own_database: str, test_servers: TestServers, amqp_namespace: str, test_broker: Broker, tcp_proxy: ProxyFactory
) -> None:
    proxy = await tcp_proxy(test_servers.amqp_url)
    settings = make_settings(
        database_url=own_database, amqp_url=proxy.url_for(test_servers.amqp_url), amqp_namespace=amqp_namespace
    )
    async with catch_events(test_broker, "users.UserCreated") as catcher, app_client(create_app(settings)) as client:
        await wait_ready(client, "ok")
        await proxy.cut()
        response = await client.post("/users", json={"email": unique_email(), "password": PASSWORD, "name": "Off"})
        assert response.status_code == 201, response.text
        degraded = await wait_ready(client, "degraded")
        assert degraded["checks"] == {"database": "ok", "broker": "down"}
        details = degraded["details"]  # the event waits in the outbox, and readiness shows it
        assert isinstance(details, dict)
        assert details["outbox_pending"] == 1
        user_id = response.json()["id"]
        await asyncio.sleep(2)
        assert catcher.matching(created_user(user_id)) == []

        await proxy.restore()
        outage_ended = time.perf_counter()
        await catcher.wait_for(created_user(user_id), within=30)
        recovered_in = time.perf_counter() - outage_ended
        await catcher.settle(1)
        assert len(catcher.matching(created_user(user_id))) == 1
        await wait_ready(client, "ok")
    print(f"\nbroker outage: event delivered {recovered_in:.2f} s after restore")  # noqa: T201


async def test_writes_answer_503_while_the_database_is_down_and_recover_without_restart(
    own_database: str, test_servers: TestServers, amqp_namespace: str, tcp_proxy: ProxyFactory
) -> None:
    database = await tcp_proxy(own_database)
    settings = make_settings(
        database_url=database.url_for(own_database), amqp_url=test_servers.amqp_url, amqp_namespace=amqp_namespace
    )
    async with app_client(create_app(settings)) as client:
        await wait_ready(client, "ok")
        await database.cut()
        response = await client.post("/users", json={"email": unique_email(), "password": PASSWORD, "name": "Down"})
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "service_unavailable"
        login = await client.post("/auth/token", data={"username": unique_email(), "password": PASSWORD})
        assert login.status_code == 503
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()["status"]) == (503, "down")
        assert (await client.get("/health/live")).status_code == 200

        await database.restore()
        await wait_ready(client, "ok")
        response = await client.post("/users", json={"email": unique_email(), "password": PASSWORD, "name": "Up"})
        assert response.status_code == 201, response.text


async def test_events_follow_commits_promptly(client: httpx.AsyncClient, test_broker: Broker) -> None:
    """Figures for the record (printed with -s): commit-to-delivery latency through LISTEN/NOTIFY."""
    latencies: list[float] = []
    async with catch_events(test_broker, "users.UserCreated") as catcher:
        for _ in range(30):
            response = await client.post("/users", json={"email": unique_email(), "password": PASSWORD, "name": "L"})
            committed = time.perf_counter()
            await catcher.wait_for(created_user(response.json()["id"]), within=10)
            latencies.append((time.perf_counter() - committed) * 1000)
    latencies.sort()
    print(  # noqa: T201
        f"\nrelay latency over {len(latencies)} registrations: "
        f"p50 {latencies[len(latencies) // 2]:.1f} ms, max {latencies[-1]:.1f} ms"
    )
