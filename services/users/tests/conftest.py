from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fastmicro.messaging import Broker
from fastmicro.migrations import upgrade_to_head
from fastmicro.testing import TestServers, app_client
from fastmicro.testing.plugin import DatabaseFactory
from users.main import create_app
from users.settings import UsersSettings

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
async def users_database(database_factory: DatabaseFactory) -> str:
    url = await database_factory("users")
    await upgrade_to_head("users:migrations", url)  # the tests run on the real migrations
    return url


@pytest.fixture(scope="session")
def users_settings(users_database: str, test_servers: TestServers, amqp_namespace: str) -> UsersSettings:
    return make_settings(database_url=users_database, amqp_url=test_servers.amqp_url, amqp_namespace=amqp_namespace)


def make_settings(**overrides: Any) -> UsersSettings:
    defaults: dict[str, Any] = {
        "environment": "test",
        "log_format": "console",
        # Cheap hashing keeps the suite fast; the algorithm and code path are the production ones.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        "password_hash_parallelism": 1,
        "outbox_poll_interval": 1.0,
        "outbox_max_backoff": 1.0,
        # The session app sees every test's logins from one client address; throttling has its own tests.
        "login_failures_per_address": 1_000_000,
        "login_failures_per_account": 1_000_000,
        "login_failures_per_account_and_address": 1_000_000,
    }
    return UsersSettings(_env_file=None, **{**defaults, **overrides})


@pytest.fixture(scope="session")
async def client(users_settings: UsersSettings, test_broker: Broker) -> AsyncIterator[httpx.AsyncClient]:
    """One running users app (API + outbox relay) for the session; tests use their own users."""
    async with app_client(create_app(users_settings), base_url="http://users") as client:
        yield client


@dataclass
class Account:
    id: uuid.UUID
    email: str
    password: str
    token: str
    body: dict[str, Any]
    refresh_token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def register(client: httpx.AsyncClient) -> Callable[..., Awaitable[Account]]:
    """Register a fresh user and log in: `account = await register()`."""

    async def create(email: str | None = None, password: str = PASSWORD, name: str = "Ada Lovelace") -> Account:
        email = email or unique_email()
        created = await client.post("/users", json={"email": email, "password": password, "name": name})
        assert created.status_code == 201, created.text
        token = await client.post("/auth/token", data={"username": email, "password": password})
        assert token.status_code == 200, token.text
        body = created.json()
        tokens = token.json()
        return Account(
            uuid.UUID(body["id"]), body["email"], password, tokens["access_token"], body, tokens["refresh_token"]
        )

    return create
