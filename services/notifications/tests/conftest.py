from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastmicro.messaging import Broker, Topology
from fastmicro.testing import TestServers, app_client, migrated_database
from fastmicro.testing.plugin import DatabaseFactory, delete_topology
from fastmicro.tokens import TokenSigner
from notifications.main import create_app, service
from notifications.settings import NotificationsSettings

from .helpers import Inbox, SmtpSink, token_codec


def make_settings(**overrides: Any) -> NotificationsSettings:
    defaults: dict[str, Any] = {
        "environment": "test",
        "log_format": "console",
        "consumer_retry_delays": [0.2, 0.5, 1.0],
        "send_retry_delays": [0.2, 0.5],
        "sender_poll_interval": 0.2,
        "sender_max_backoff": 0.5,
        "smtp_timeout": 5.0,
    }
    return NotificationsSettings(_env_file=None, **{**defaults, **overrides})


@pytest.fixture(scope="session")
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """A real SMTP server for the session's app; tests tell their mail apart by recipient."""
    sink = await SmtpSink().start()
    yield sink
    await sink.stop()


@pytest.fixture(scope="session")
async def notifications_database(database_factory: DatabaseFactory) -> str:
    return await migrated_database(database_factory, "notifications", "notifications:migrations")


@pytest.fixture(scope="session")
def settings(
    notifications_database: str, test_servers: TestServers, amqp_namespace: str, smtp_sink: SmtpSink
) -> NotificationsSettings:
    return make_settings(
        database_url=notifications_database,
        amqp_url=test_servers.amqp_url,
        amqp_namespace=amqp_namespace,
        smtp_port=smtp_sink.port,
    )


@pytest.fixture(scope="session")
async def client(
    settings: NotificationsSettings, test_broker: Broker, queues_to_delete: list[str]
) -> AsyncIterator[httpx.AsyncClient]:
    """One running notifications app (API, consumer, sender) for the session; tests use their own users."""
    queues_to_delete.extend(await service.declare_topology(settings))
    async with app_client(create_app(settings), base_url="http://notifications") as client:
        yield client


@pytest.fixture(scope="session")
def tokens(settings: NotificationsSettings) -> TokenSigner:
    return token_codec(settings)


@pytest.fixture(scope="session")
async def database(notifications_database: str) -> AsyncIterator[AsyncEngine]:
    """The session app's database, for looking at what the API does not show (attempts, bodies, inbox)."""
    engine = create_async_engine(notifications_database)
    yield engine
    await engine.dispose()


@pytest.fixture
def inbox(client: httpx.AsyncClient, tokens: TokenSigner) -> Callable[[uuid.UUID], Inbox]:
    return lambda user_id: Inbox(client, tokens, user_id)


@pytest.fixture(scope="session")
async def unaware_client(
    settings: NotificationsSettings, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A second notifications API (no roles) that has not learnt of any deletion, as every replica is
    between a UserDeleted's commit and its next revocation reload: for reading what a deletion left."""
    app = create_app(make_settings(**settings.model_dump(exclude={"serve_roles"}), serve_roles=False))
    async with app_client(app, base_url="http://notifications") as unaware:
        app.state.runtime.revocations = None
        yield unaware


@pytest.fixture
def unaware_inbox(unaware_client: httpx.AsyncClient, tokens: TokenSigner) -> Callable[[uuid.UUID], Inbox]:
    return lambda user_id: Inbox(unaware_client, tokens, user_id)


@dataclass
class Service:
    """A notifications app of a test's own: its own database, broker namespace and settings."""

    client: httpx.AsyncClient
    broker: Broker
    settings: NotificationsSettings
    database: AsyncEngine

    def inbox(self, user_id: uuid.UUID) -> Inbox:
        return Inbox(self.client, token_codec(self.settings), user_id)


ServiceFactory = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture
def own_service(database_factory: DatabaseFactory, test_servers: TestServers, amqp_namespace: str) -> ServiceFactory:
    """`async with own_service(smtp_port=...) as service:` an app no other test shares.

    It consumes from a queue of its own (another namespace), so the session's app never takes
    its events, and it sends from a database of its own, so it never sends the session's mail.
    """

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Service]:
        namespace = f"{amqp_namespace}{uuid.uuid4().hex[:6]}."
        settings = make_settings(
            database_url=await migrated_database(database_factory, "notifications", "notifications:migrations"),
            amqp_url=test_servers.amqp_url,
            amqp_namespace=namespace,
            **overrides,
        )
        broker = Broker(test_servers.amqp_url, Topology(namespace))
        engine = create_async_engine(settings.database_url)
        queues = await service.declare_topology(settings)
        try:
            async with app_client(create_app(settings), base_url="http://notifications") as client:
                yield Service(client, broker, settings, engine)
        finally:
            await engine.dispose()
            await delete_topology(broker, tuple(queues))
            await broker.close()

    return start
