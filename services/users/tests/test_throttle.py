"""Login throttling: failures counted per account and per address, across replicas, in a sliding window."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fastmicro.messaging import Broker
from fastmicro.testing import app_client
from users.dependencies import Users
from users.main import create_app
from users.settings import UsersSettings

from .conftest import PASSWORD, make_settings
from .helpers import Register, assert_problem, login

WINDOW = 600.0
PAIR, ACCOUNT, ADDRESS = 3, 6, 8
WRONG = "not the password"

Client = Callable[[str], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def now() -> list[datetime]:
    """The time both replicas read; the test moves it."""
    return [datetime.now(UTC)]


@pytest.fixture
def replicas(users_settings: UsersSettings, test_broker: Broker, now: list[datetime]) -> tuple[Client, Client]:
    """Two app instances on one database, with small limits: `async with replica(address) as client`."""
    settings = make_settings(
        **users_settings.model_dump(include={"database_url", "amqp_url", "amqp_namespace"}),
        login_failures_per_account_and_address=PAIR,
        login_failures_per_account=ACCOUNT,
        login_failures_per_address=ADDRESS,
        login_failure_window_seconds=WINDOW,
        forwarded_allow_ips=["10.0.0.1"],
    )

    def replica() -> Client:
        app = create_app(settings)

        @contextlib.asynccontextmanager
        async def client(address: str) -> AsyncIterator[httpx.AsyncClient]:
            async with app_client(app, base_url="http://users", client_address=address) as http:
                users: Users = app.state.runtime
                users.authority = dataclasses.replace(users.authority, clock=lambda: now[0])
                yield http

        return client

    return replica(), replica()


async def fail(client: httpx.AsyncClient, email: str, times: int) -> None:
    for _ in range(times):
        assert_problem(await login(client, email, WRONG), 401, "invalid_credentials")


def assert_throttled(response: httpx.Response, retry_after: float) -> None:
    assert_problem(response, 429, "too_many_attempts")
    assert int(response.headers["retry-after"]) == pytest.approx(retry_after, abs=1)


async def test_an_attacker_is_throttled_and_the_owner_from_elsewhere_is_not(
    replicas: tuple[Client, Client], register: Register
) -> None:
    first, second = replicas
    account = await register()
    async with first("203.0.113.7") as attacker, second("198.51.100.2") as owner:
        await fail(attacker, account.email, PAIR)

        # Even the right password: the check comes before the password is looked at.
        assert_throttled(await login(attacker, account.email, PASSWORD), WINDOW)
        assert_throttled(await login(attacker, account.email, WRONG), WINDOW)
        response = await login(owner, account.email, PASSWORD)
        assert response.status_code == 200, response.text


async def test_failures_on_one_replica_count_on_the_other(
    replicas: tuple[Client, Client], register: Register, now: list[datetime]
) -> None:
    first, second = replicas
    account = await register()
    async with first("203.0.113.8") as one, second("203.0.113.8") as other:
        await fail(one, account.email, PAIR - 1)
        now[0] += timedelta(seconds=30)
        await fail(other, account.email, 1)

        assert_throttled(await login(one, account.email, PASSWORD), WINDOW - 30)
        assert_throttled(await login(other, account.email, PASSWORD), WINDOW - 30)


async def test_the_window_slides(replicas: tuple[Client, Client], register: Register, now: list[datetime]) -> None:
    first, _ = replicas
    account = await register()
    async with first("203.0.113.9") as client:
        await fail(client, account.email, 1)
        now[0] += timedelta(seconds=100)
        await fail(client, account.email, PAIR - 1)
        # Blocked until the oldest failure that keeps the count at the limit leaves the window.
        assert_throttled(await login(client, account.email, PASSWORD), WINDOW - 100)

        now[0] += timedelta(seconds=WINDOW - 100 - 1)
        assert_throttled(await login(client, account.email, PASSWORD), 1)
        now[0] += timedelta(seconds=1)
        assert (await login(client, account.email, PASSWORD)).status_code == 200


async def test_a_success_clears_the_accounts_failures(replicas: tuple[Client, Client], register: Register) -> None:
    first, _ = replicas
    account = await register()
    async with first("203.0.113.10") as client:
        await fail(client, account.email, PAIR - 1)
        assert (await login(client, account.email, PASSWORD)).status_code == 200

        await fail(client, account.email, PAIR - 1)
        assert (await login(client, account.email, PASSWORD)).status_code == 200


async def test_a_distributed_attack_meets_the_accounts_ceiling(
    replicas: tuple[Client, Client], register: Register
) -> None:
    first, _ = replicas
    account = await register()
    for host in range(ACCOUNT // (PAIR - 1)):
        async with first(f"192.0.2.{host + 1}") as client:
            await fail(client, account.email, PAIR - 1)
    async with first("192.0.2.200") as fresh:
        assert_throttled(await login(fresh, account.email, PASSWORD), WINDOW)


async def test_an_address_trying_many_accounts_is_throttled(
    replicas: tuple[Client, Client], register: Register
) -> None:
    first, _ = replicas
    victims = [await register() for _ in range(ADDRESS // (PAIR - 1))]
    spare = await register()
    async with first("203.0.113.11") as stuffer, first("203.0.113.12") as other:
        for victim in victims:
            await fail(stuffer, victim.email, PAIR - 1)

        assert_throttled(await login(stuffer, spare.email, PASSWORD), WINDOW)
        assert (await login(other, spare.email, PASSWORD)).status_code == 200


async def test_unknown_accounts_are_throttled_alike(replicas: tuple[Client, Client]) -> None:
    """Otherwise a 429 would tell which emails have accounts."""
    first, _ = replicas
    async with first("203.0.113.13") as client:
        await fail(client, "nobody-here@example.com", PAIR)
        assert_throttled(await login(client, "NOBODY-here@example.com", WRONG), WINDOW)


async def test_the_forwarded_address_counts_only_behind_a_trusted_proxy(
    replicas: tuple[Client, Client], register: Register
) -> None:
    first, _ = replicas
    account = await register()
    async with first("10.0.0.1") as proxy, first("203.0.113.14") as direct:
        for _ in range(PAIR):  # an attacker behind the proxy
            response = await proxy.post(
                "/auth/token",
                data={"username": account.email, "password": WRONG},
                headers={"X-Forwarded-For": "198.51.100.77"},
            )
            assert_problem(response, 401, "invalid_credentials")
        behind_proxy = {"X-Forwarded-For": "198.51.100.77"}
        form = {"username": account.email, "password": PASSWORD}
        assert_throttled(await proxy.post("/auth/token", data=form, headers=behind_proxy), WINDOW)
        # Another client behind the same proxy is another address.
        other = await proxy.post("/auth/token", data=form, headers={"X-Forwarded-For": "198.51.100.78"})
        assert other.status_code == 200, other.text

        # Not a trusted proxy: its X-Forwarded-For is ignored, so changing it buys nothing.
        for spoofed in range(PAIR):
            response = await direct.post(
                "/auth/token",
                data={"username": account.email, "password": WRONG},
                headers={"X-Forwarded-For": f"198.18.0.{spoofed}"},
            )
            assert_problem(response, 401, "invalid_credentials")
        response = await direct.post("/auth/token", data=form, headers={"X-Forwarded-For": "198.18.0.99"})
        assert_throttled(response, WINDOW)


async def test_a_concurrent_burst_ends_throttled(replicas: tuple[Client, Client], register: Register) -> None:
    """Every attempt is either refused or recorded before its password is checked, so once a burst is
    over the limit holds, however its attempts interleaved (how far past the limit a burst gets is
    bounded by how many run at once: see docs/operations.md)."""
    first, second = replicas
    account = await register()
    form = {"username": account.email, "password": WRONG}
    async with first("203.0.113.15") as one, second("203.0.113.15") as other:
        responses = await asyncio.gather(
            *((one if i % 2 else other).post("/auth/token", data=form) for i in range(4 * PAIR))
        )
        assert {response.status_code for response in responses} <= {401, 429}

        assert_throttled(await login(one, account.email, PASSWORD), WINDOW)
