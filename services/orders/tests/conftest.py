from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fastmicro.messaging import Broker
from fastmicro.testing import TestServers, app_client, migrated_database
from fastmicro.testing.plugin import DatabaseFactory
from fastmicro.testing.tokens import signer_for
from fastmicro.tokens import TokenSigner
from orders.main import create_app, service
from orders.settings import OrdersSettings


@pytest.fixture(scope="session")
async def orders_database(database_factory: DatabaseFactory) -> str:
    return await migrated_database(database_factory, "orders", "orders:migrations")  # the real migrations


@pytest.fixture(scope="session")
def orders_settings(orders_database: str, test_servers: TestServers, amqp_namespace: str) -> OrdersSettings:
    return make_settings(database_url=orders_database, amqp_url=test_servers.amqp_url, amqp_namespace=amqp_namespace)


def make_settings(**overrides: Any) -> OrdersSettings:
    defaults: dict[str, Any] = {
        "environment": "test",
        "log_format": "console",
        "outbox_poll_interval": 1.0,
        "outbox_max_backoff": 1.0,
        "consumer_retry_delays": [0.2, 0.5],  # a failing handler is retried, then dead-lettered, quickly
    }
    return OrdersSettings(_env_file=None, **{**defaults, **overrides})


@pytest.fixture(scope="session")
def app(orders_settings: OrdersSettings) -> FastAPI:
    """The orders app; running while `client` is (its runtime is `app.state.runtime` then)."""
    return create_app(orders_settings)


@pytest.fixture(scope="session")
async def client(
    app: FastAPI, orders_settings: OrdersSettings, test_broker: Broker, queues_to_delete: list[str]
) -> AsyncIterator[httpx.AsyncClient]:
    """One running orders app (API, outbox relay, UserDeleted consumer) for the session."""
    # As `python -m orders topology` does before the service starts: nothing published is unrouted.
    queues_to_delete.extend(await service.declare_topology(orders_settings))
    async with app_client(app, base_url="http://orders") as client:
        yield client


@pytest.fixture(scope="session")
async def unaware_client(
    orders_settings: OrdersSettings, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A second orders API (no roles) that has not learnt of any deletion: as every replica is between
    a UserDeleted's commit and its next revocation reload. Tests of what orders does with a deleted
    user's requests beyond the 401 (the placing guard, reads of their cancelled orders) use it."""
    app = create_app(make_settings(**orders_settings.model_dump(exclude={"serve_roles"}), serve_roles=False))
    async with app_client(app, base_url="http://orders") as unaware:
        app.state.runtime.revocations = None
        yield unaware


@pytest.fixture(scope="session")
def codec(orders_settings: OrdersSettings) -> TokenSigner:
    """Issues tokens as the users service does: orders accepts any token users would issue."""
    return signer_for(orders_settings)


@dataclass(frozen=True)
class Customer:
    id: uuid.UUID
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


NewCustomer = Callable[[], Customer]


@pytest.fixture
def new_customer(codec: TokenSigner) -> NewCustomer:
    """`alice = new_customer()`: a user id of their own and a valid token for it."""

    def make() -> Customer:
        user_id = uuid.uuid4()
        return Customer(user_id, codec.issue(user_id).access_token)

    return make
