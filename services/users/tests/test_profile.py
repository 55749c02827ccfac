"""GET /users/{id} and PATCH /users/{id}: self only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from fastmicro.messaging import Broker
from fastmicro.testing import catch_events

from .conftest import PASSWORD
from .helpers import Register, assert_problem, assert_user, assert_validation_error, for_user, login, parse_timestamp


async def test_get_answers_the_user_to_itself(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.get(f"/users/{account.id}", headers=account.auth)
    assert assert_user(response, email=account.email, name="Ada Lovelace") == account.body


async def test_get_refuses_another_users_id(client: httpx.AsyncClient, register: Register) -> None:
    account, other = await register(), await register()
    assert_problem(await client.get(f"/users/{other.id}", headers=account.auth), 403, "forbidden")


async def test_get_refuses_an_id_that_does_not_exist_as_forbidden(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    assert_problem(await client.get(f"/users/{uuid.uuid4()}", headers=account.auth), 403, "forbidden")


async def test_get_refuses_an_id_that_is_not_a_uuid(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    assert_validation_error(await client.get("/users/not-a-uuid", headers=account.auth), ["path", "user_id"])


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_user_routes_need_a_token(client: httpx.AsyncClient, register: Register, method: str) -> None:
    account = await register()
    response = await client.request(method, f"/users/{account.id}", json={"name": "X"} if method == "PATCH" else None)
    assert_problem(response, 401, "not_authenticated")
    assert (await client.get("/users/me", headers=account.auth)).json() == account.body


async def test_patch_renames_and_advances_updated_at(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.patch(f"/users/{account.id}", json={"name": "Grace Hopper"}, headers=account.auth)
    user = assert_user(response, email=account.email, name="Grace Hopper")
    assert user["id"] == account.body["id"]
    assert user["created_at"] == account.body["created_at"]
    assert parse_timestamp(user["updated_at"]) > parse_timestamp(account.body["updated_at"])
    assert (await client.get("/users/me", headers=account.auth)).json() == user


async def test_patch_changes_the_password_and_ends_every_session(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    second_session = (await login(client, account.email, PASSWORD)).json()["refresh_token"]
    new_password = "a brand new passphrase"
    changes = {"password": new_password, "current_password": PASSWORD}
    response = await client.patch(f"/users/{account.id}", json=changes, headers=account.auth)
    assert_user(response, email=account.email, name="Ada Lovelace")
    assert new_password not in response.text
    assert_problem(await login(client, account.email, PASSWORD), 401, "invalid_credentials")
    assert (await login(client, account.email, new_password)).status_code == 200
    for refresh_token in (account.refresh_token, second_session):
        assert_problem(await client.post("/auth/refresh", json={"refresh_token": refresh_token}), 401, "invalid_token")


async def test_patch_refuses_a_new_password_with_a_wrong_current_one(
    client: httpx.AsyncClient, register: Register
) -> None:
    """A stolen access token alone cannot take the account over."""
    account = await register()
    changes = {"password": "a brand new passphrase", "current_password": "not the password"}
    response = await client.patch(f"/users/{account.id}", json=changes, headers=account.auth)
    assert_problem(response, 403, "invalid_current_password")
    assert (await login(client, account.email, PASSWORD)).status_code == 200
    refreshed = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refreshed.status_code == 200, refreshed.text


async def test_patch_with_nothing_changes_nothing(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.patch(f"/users/{account.id}", json={}, headers=account.auth)
    assert assert_user(response, email=account.email, name="Ada Lovelace") == account.body
    assert (await client.get("/users/me", headers=account.auth)).json() == account.body


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"name": None}, ["body"]),
        ({"password": None}, ["body"]),
        ({"email": "new@example.com"}, ["body", "email"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "  "}, ["body", "name"]),
        ({"name": "n" * 101}, ["body", "name"]),
        ({"name": 123}, ["body", "name"]),
        ({"password": "Sh0rt!x", "current_password": PASSWORD}, ["body", "password"]),
        ({"password": "L" * 129, "current_password": PASSWORD}, ["body", "password"]),
        ({"password": "a brand new passphrase"}, ["body"]),
        ({"password": "a brand new passphrase", "current_password": None}, ["body"]),
    ],
    ids=[
        "name-null",
        "password-null",
        "email",
        "name-empty",
        "name-blank",
        "name-101",
        "name-int",
        "password-7",
        "password-129",
        "password-without-current",
        "current-password-null",
    ],
)
async def test_patch_refuses_invalid_changes(
    client: httpx.AsyncClient, register: Register, changes: dict[str, Any], loc: list[Any]
) -> None:
    account = await register()
    response = await client.patch(f"/users/{account.id}", json=changes, headers=account.auth)
    assert_validation_error(response, loc)
    assert (await client.get("/users/me", headers=account.auth)).json() == account.body
    assert (await login(client, account.email, PASSWORD)).status_code == 200


@pytest.mark.parametrize("document", [b"{bad", b"[]", b'"Grace"'])
async def test_patch_refuses_a_body_that_is_not_a_json_object(
    client: httpx.AsyncClient, register: Register, document: bytes
) -> None:
    account = await register()
    headers = {**account.auth, "Content-Type": "application/json"}
    response = await client.patch(f"/users/{account.id}", content=document, headers=headers)
    errors = assert_validation_error(response)
    assert all(error["loc"][0] == "body" for error in errors)


async def test_patch_refuses_another_users_id(client: httpx.AsyncClient, register: Register) -> None:
    account, other = await register(), await register()
    response = await client.patch(f"/users/{other.id}", json={"name": "Mallory"}, headers=account.auth)
    assert_problem(response, 403, "forbidden")
    assert (await client.get("/users/me", headers=other.auth)).json() == other.body


async def test_patch_refuses_a_non_uuid_id(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.patch("/users/grace", json={"name": "Grace"}, headers=account.auth)
    assert_validation_error(response, ["path", "user_id"])


async def test_patch_emits_user_updated_with_the_new_state(
    client: httpx.AsyncClient, register: Register, test_broker: Broker
) -> None:
    account = await register()
    async with catch_events(test_broker, "users.UserUpdated") as catcher:
        response = await client.patch(f"/users/{account.id}", json={"name": "Grace Hopper"}, headers=account.auth)
        assert response.status_code == 200, response.text
        [(envelope, message)] = await catcher.wait_for(for_user(account.id))
        await catcher.settle(0.5)
    assert len(catcher.matching(for_user(account.id))) == 1
    assert envelope.type == "UserUpdated"
    assert envelope.source == "users"
    assert envelope.data == {"user_id": str(account.id), "email": account.email, "name": "Grace Hopper"}
    assert message.routing_key == "users.UserUpdated"
