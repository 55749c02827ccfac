"""Input the database or the hasher could not take (refused as 422/401, never 500), and racing requests.

The contract: no endpoint answers 500 to bad input, and one deletion is one UserDeleted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from fastmicro.messaging import Broker
from fastmicro.testing import catch_events

from .conftest import PASSWORD, unique_email
from .helpers import Register, assert_problem, assert_validation_error, for_user, login


def raw_json(document: dict[str, Any]) -> dict[str, Any]:
    """A request body sent as escaped JSON, so that lone surrogates survive the client's encoder."""
    return {"content": json.dumps(document), "headers": {"Content-Type": "application/json"}}


async def test_concurrent_registrations_of_one_email_make_one_user(client: httpx.AsyncClient) -> None:
    body = {"email": unique_email(), "password": PASSWORD, "name": "Ada"}
    responses = await asyncio.gather(*(client.post("/users", json=body) for _ in range(5)))
    assert sorted(response.status_code for response in responses) == [201, 409, 409, 409, 409]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "email_taken")


async def test_register_refuses_a_name_with_a_nul_character(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json={"email": unique_email(), "password": PASSWORD, "name": "Ada\x00"})
    assert_validation_error(response, ["body", "name"])


async def test_patch_refuses_a_name_with_a_nul_character(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.patch(f"/users/{account.id}", json={"name": "Ada\x00"}, headers=account.auth)
    assert_validation_error(response, ["body", "name"])


async def test_register_refuses_a_password_with_a_lone_surrogate(client: httpx.AsyncClient) -> None:
    body = {"email": unique_email(), "password": "password\ud800", "name": "Ada"}
    assert_validation_error(await client.post("/users", **raw_json(body)), ["body", "password"])


async def test_patch_refuses_a_password_with_a_lone_surrogate(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    request = raw_json({"password": "password\ud800"})
    request["headers"].update(account.auth)
    assert_validation_error(await client.patch(f"/users/{account.id}", **request), ["body", "password"])


async def test_login_with_a_nul_character_in_the_username_is_refused(client: httpx.AsyncClient) -> None:
    assert_problem(await login(client, "ada\x00@example.com", PASSWORD), 401, "invalid_credentials")


async def test_a_patch_racing_a_delete_is_never_a_500(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    patch, delete = await asyncio.gather(
        client.patch(f"/users/{account.id}", json={"name": "Racer"}, headers=account.auth),
        client.delete(f"/users/{account.id}", headers=account.auth),
    )
    assert delete.status_code == 204
    assert patch.status_code in (200, 401), patch.text


async def test_concurrent_deletes_of_one_account_delete_it_once(
    client: httpx.AsyncClient, register: Register, test_broker: Broker
) -> None:
    account = await register()
    async with catch_events(test_broker, "users.UserDeleted") as catcher:
        responses = await asyncio.gather(
            *(client.delete(f"/users/{account.id}", headers=account.auth) for _ in range(3))
        )
        await catcher.wait_for(for_user(account.id))
        await catcher.settle(1.0)
    assert sorted(response.status_code for response in responses) == [204, 401, 401]
    assert len(catcher.matching(for_user(account.id))) == 1
