"""POST /auth/token and the bearer token every authenticated call carries (seen through GET /users/me)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import jwt
import pytest

from fastmicro.testing.tokens import new_signing_key, signer_for
from fastmicro.tokens import TokenSigner
from users.settings import UsersSettings

from .conftest import PASSWORD, unique_email
from .helpers import Register, assert_problem, assert_user, bearer, claims, login, sign


def codec(settings: UsersSettings, ttl_seconds: int) -> TokenSigner:
    return signer_for(settings, ttl_seconds=ttl_seconds)


async def test_login_answers_a_bearer_token(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings
) -> None:
    account = await register()
    response = await login(client, account.email, PASSWORD)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    # RFC 6749, 5.1: no cache may keep a token
    assert (response.headers["cache-control"], response.headers["pragma"]) == ("no-store", "no-cache")
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == users_settings.jwt_ttl_seconds
    me = await client.get("/users/me", headers=bearer(body["access_token"]))
    assert me.json()["id"] == str(account.id)


async def test_login_accepts_the_email_in_another_case(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await login(client, account.email.upper(), PASSWORD)
    assert response.status_code == 200, response.text
    me = await client.get("/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["id"] == str(account.id)


@pytest.mark.parametrize(
    "spelling",
    ["jose\u0301.{tag}@example.com", "ada.{tag}@xn--bcher-kva.example"],
    ids=["decomposed-accent", "punycode-domain"],
)
async def test_login_accepts_the_very_spelling_the_account_was_registered_with(
    client: httpx.AsyncClient, register: Register, spelling: str
) -> None:
    """Registration normalises an address (Unicode NFC, IDNA domain); login must do the same."""
    email = spelling.format(tag=uuid.uuid4().hex[:8])
    account = await register(email=email)

    response = await login(client, email, PASSWORD)

    assert response.status_code == 200, response.text
    me = await client.get("/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["id"] == str(account.id)


async def test_login_refuses_a_wrong_password(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    assert_problem(await login(client, account.email, PASSWORD + "!"), 401, "invalid_credentials")


async def test_login_refuses_an_unknown_email_as_it_refuses_a_wrong_password(
    client: httpx.AsyncClient, register: Register
) -> None:
    account = await register()
    unknown = assert_problem(await login(client, unique_email(), PASSWORD), 401, "invalid_credentials")
    wrong = assert_problem(await login(client, account.email, "not the password"), 401, "invalid_credentials")
    assert unknown == wrong  # the answer does not tell which emails are registered


@pytest.mark.parametrize(
    ("form", "missing"),
    [
        ({"username": "someone@example.com"}, "password"),
        ({"password": PASSWORD}, "username"),
    ],
)
async def test_login_refuses_a_missing_form_field(
    client: httpx.AsyncClient, form: dict[str, str], missing: str
) -> None:
    response = await client.post("/auth/token", data=form)
    body = assert_problem(response, 422, "validation_error")
    assert ["body", missing] in [error["loc"] for error in body["errors"]]


async def test_me_answers_the_tokens_owner(client: httpx.AsyncClient, register: Register) -> None:
    account = await register()
    response = await client.get("/users/me", headers=account.auth)
    assert assert_user(response, email=account.email, name="Ada Lovelace") == account.body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no-header", "empty-bearer", "basic"],
)
async def test_me_without_a_bearer_token_is_not_authenticated(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_problem(await client.get("/users/me", headers=headers), 401, "not_authenticated")


async def test_me_accepts_a_token_made_with_the_service_settings(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings
) -> None:
    """The control for the refusals below: what they change is all that is wrong with their tokens."""
    account = await register()
    for token in (
        codec(users_settings, 60).issue(account.id).access_token,
        sign(users_settings, claims(users_settings, account.id)),
    ):
        assert (await client.get("/users/me", headers=bearer(token))).status_code == 200


async def test_me_refuses_a_garbage_token(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/users/me", headers=bearer("not.a.jwt")), 401, "invalid_token")


async def test_me_refuses_a_token_signed_with_another_key_under_the_same_kid(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings
) -> None:
    account = await register()
    forged = sign(users_settings, claims(users_settings, account.id), key=new_signing_key("dev-only-change-me"))
    assert_problem(await client.get("/users/me", headers=bearer(forged)), 401, "invalid_token")


async def test_me_refuses_an_unsigned_token(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings
) -> None:
    account = await register()
    unsigned = jwt.encode(claims(users_settings, account.id), "", algorithm="none")
    assert_problem(await client.get("/users/me", headers=bearer(unsigned)), 401, "invalid_token")


async def test_me_refuses_an_expired_token(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings
) -> None:
    account = await register()
    expired = codec(users_settings, -10).issue(account.id).access_token
    assert_problem(await client.get("/users/me", headers=bearer(expired)), 401, "invalid_token")
    crafted = sign(users_settings, claims(users_settings, account.id, lifetime=timedelta(seconds=-10)))
    assert_problem(await client.get("/users/me", headers=bearer(crafted)), 401, "invalid_token")


@pytest.mark.parametrize("claim", ["iss", "aud"])
async def test_me_refuses_a_token_for_another_issuer_or_audience(
    client: httpx.AsyncClient, register: Register, users_settings: UsersSettings, claim: str
) -> None:
    account = await register()
    token = sign(users_settings, {**claims(users_settings, account.id), claim: "someone-else"})
    assert_problem(await client.get("/users/me", headers=bearer(token)), 401, "invalid_token")


async def test_me_refuses_a_valid_token_for_a_user_that_does_not_exist(
    client: httpx.AsyncClient, users_settings: UsersSettings
) -> None:
    token = codec(users_settings, 60).issue(uuid.uuid4()).access_token
    assert_problem(await client.get("/users/me", headers=bearer(token)), 401, "invalid_token")
