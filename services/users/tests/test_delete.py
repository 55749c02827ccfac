"""DELETE /users/{id}: self only; the account, its login and its tokens end with it."""

from __future__ import annotations

import uuid

import httpx
import pytest

from fastmicro.messaging import Broker
from fastmicro.testing import catch_events

from .conftest import PASSWORD, Account
from .helpers import Register, assert_problem, assert_user, for_user, login


async def delete(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.delete(f"/users/{account.id}", headers=account.auth)
    assert response.status_code == 204, response.text
    assert response.content == b""


async def test_delete_answers_204_with_no_body(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.delete(f"/users/{account.id}", headers=account.auth)
    assert response.status_code == 204
    assert response.content == b""
    assert "content-type" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/users/me"), ("GET", "/users/{id}"), ("PATCH", "/users/{id}"), ("DELETE", "/users/{id}")],
)
async def test_a_deleted_users_token_is_refused(
    client: httpx.AsyncClient, register: Register, method: str, path: str
) -> None:
    account = await register()
    assert (await client.get("/users/me", headers=account.auth)).status_code == 200
    await delete(client, account)
    body = {"name": "Ghost"} if method == "PATCH" else None
    response = await client.request(method, path.format(id=account.id), json=body, headers=account.auth)
    assert_problem(response, 401, "invalid_token")


async def test_a_deleted_user_can_no_longer_log_in(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    await delete(client, account)
    assert_problem(await login(client, account.email, PASSWORD), 401, "invalid_credentials")


async def test_a_deleted_users_email_can_be_registered_again(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    await delete(client, account)
    response = await client.post("/users", json={"email": account.email, "password": PASSWORD, "name": "Again"})
    again = assert_user(response, 201, email=account.email, name="Again")
    assert again["id"] != str(account.id)
    assert_problem(await client.get("/users/me", headers=account.auth), 401, "invalid_token")
    assert (await login(client, account.email, PASSWORD)).status_code == 200


async def test_delete_refuses_another_users_id(client: httpx.AsyncClient, register: Register) -> None:
    account, other = await register(), await register()
    assert_problem(await client.delete(f"/users/{other.id}", headers=account.auth), 403, "forbidden")
    assert (await client.get("/users/me", headers=other.auth)).json() == other.body
    assert (await login(client, other.email, PASSWORD)).status_code == 200


async def test_delete_refuses_an_id_that_does_not_exist_as_forbidden(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    assert_problem(await client.delete(f"/users/{uuid.uuid4()}", headers=account.auth), 403, "forbidden")
    assert (await client.get("/users/me", headers=account.auth)).status_code == 200


async def test_delete_emits_user_deleted(client: httpx.AsyncClient, register: Register, test_broker: Broker) -> None:
    account = await register()
    async with catch_events(test_broker, "users.UserDeleted") as catcher:
        await delete(client, account)
        [(envelope, message)] = await catcher.wait_for(for_user(account.id))
        await catcher.settle(0.5)
    assert len(catcher.matching(for_user(account.id))) == 1
    assert envelope.type == "UserDeleted"
    assert envelope.source == "users"
    assert envelope.data == {"user_id": str(account.id)}
    assert message.routing_key == "users.UserDeleted"
