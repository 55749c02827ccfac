"""Sessions: /auth/refresh rotates, a reused refresh token ends its family, /auth/logout; and the JWKS."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from fastmicro.messaging import Broker
from fastmicro.testing import app_client
from fastmicro.tokens import PublicKeySet, TokenVerifier
from users.dependencies import Users
from users.main import create_app
from users.settings import UsersSettings

from .conftest import PASSWORD, Account
from .helpers import Register, assert_problem, bearer, login

_NO_STORE = ("no-store", "no-cache")
Clocked = tuple[httpx.AsyncClient, list[datetime]]


async def refresh(client: httpx.AsyncClient, token: str, *, form: bool = False) -> httpx.Response:
    if form:
        return await client.post("/auth/refresh", data={"refresh_token": token, "grant_type": "refresh_token"})
    return await client.post("/auth/refresh", json={"refresh_token": token})


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_refresh_answers_a_new_pair_and_retires_the_old_token(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings, form: bool
) -> None:
    account = await register()

    response = await refresh(client, account.refresh_token, form=form)

    assert response.status_code == 200, response.text
    assert (response.headers["cache-control"], response.headers["pragma"]) == _NO_STORE
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["expires_in"] == users_settings.jwt_ttl_seconds
    assert body["refresh_token"] != account.refresh_token
    assert (await client.get("/users/me", headers=bearer(body["access_token"]))).json()["id"] == str(account.id)
    # The successor works once in turn.
    assert (await refresh(client, body["refresh_token"])).status_code == 200


async def test_a_reused_refresh_token_revokes_its_whole_family(client: httpx.AsyncClient, register: Register) -> None:
    """The thief and the owner both hold the token: whichever comes second ends the session for both."""
    account = await register()
    stolen = account.refresh_token
    owner_next = (await refresh(client, stolen)).json()["refresh_token"]

    assert_problem(await refresh(client, stolen), 401, "invalid_token")  # reuse detected
    assert_problem(await refresh(client, owner_next), 401, "invalid_token")  # the family is gone


async def test_a_reuse_ends_only_its_own_family(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    other_session = (await login(client, account.email, PASSWORD)).json()["refresh_token"]
    await refresh(client, account.refresh_token)

    assert_problem(await refresh(client, account.refresh_token), 401, "invalid_token")

    assert (await refresh(client, other_session)).status_code == 200


async def test_logout_ends_the_session_and_answers_204(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    successor = (await refresh(client, account.refresh_token)).json()["refresh_token"]

    response = await client.post("/auth/logout", json={"refresh_token": successor})

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await refresh(client, successor), 401, "invalid_token")


@pytest.mark.parametrize("token", ["never-issued", "x" * 256])
async def test_logout_with_an_unknown_token_is_204_too(client: httpx.AsyncClient, token: str) -> None:
    """RFC 7009, 2.2: nothing to end is not an error, and answers the same as a real logout."""
    assert (await client.post("/auth/logout", data={"refresh_token": token})).status_code == 204


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": ""}, {"refresh_token": "x" * 257}, {"refresh_token": 5}, {"refresh_token": "t", "x": 1}],
    ids=["missing", "empty", "too-long", "not-a-string", "unknown-member"],
)
@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
async def test_refresh_and_logout_refuse_a_malformed_body_with_422(
    client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    assert_problem(await client.post(path, json=body), 422, "validation_error")


@pytest.mark.parametrize("document", [b"{bad", b"\xff\xfe", b"[]"])
async def test_refresh_refuses_a_body_that_is_no_json_object_with_422(
    client: httpx.AsyncClient, document: bytes
) -> None:
    response = await client.post("/auth/refresh", content=document, headers={"Content-Type": "application/json"})
    assert_problem(response, 422, "validation_error")


async def test_an_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(await refresh(client, "never-issued"), 401, "invalid_token")


async def test_deleting_the_account_ends_its_sessions(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    assert (await client.delete(f"/users/{account.id}", headers=account.auth)).status_code == 204

    assert_problem(await refresh(client, account.refresh_token), 401, "invalid_token")


@pytest.fixture
async def clocked(
    users_settings: UsersSettings, test_broker: Broker
) -> AsyncIterator[tuple[httpx.AsyncClient, list[datetime]]]:
    """An app whose sessions read the time from `now[0]`, which the test moves."""
    now = [datetime.now(UTC)]
    app = create_app(users_settings)
    async with app_client(app, base_url="http://users") as client:
        users: Users = app.state.runtime
        users.authority = dataclasses.replace(users.authority, clock=lambda: now[0])
        yield client, now


async def test_a_refresh_token_expires_after_its_lifetime(
    clocked: Clocked, register: Register, users_settings: UsersSettings
) -> None:
    client, now = clocked
    account: Account = await register()
    pair = (await login(client, account.email, PASSWORD)).json()
    lifetime = timedelta(days=users_settings.refresh_token_ttl_days)

    now[0] += lifetime - timedelta(seconds=1)
    renewed = await refresh(client, pair["refresh_token"])  # each use starts a new lifetime
    assert renewed.status_code == 200, renewed.text
    now[0] += lifetime
    assert_problem(await refresh(client, renewed.json()["refresh_token"]), 401, "invalid_token")


async def test_jwks_publishes_the_key_that_verifies_issued_tokens(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings
) -> None:
    account = await register()

    response = await client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    document = response.json()
    assert [key["kid"] for key in document["keys"]] == [jwt.get_unverified_header(account.token)["kid"]]
    assert all("d" not in key for key in document["keys"])
    verifier = TokenVerifier(
        PublicKeySet.from_json(response.text), issuer=users_settings.jwt_issuer, audience=users_settings.jwt_audience
    )
    assert verifier.verify(account.token).user_id == account.id
