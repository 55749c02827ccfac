"""Passwords (argon2id), bearer tokens (JWT) and the CurrentUser dependency."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter

from fastmicro.errors import PROBLEM_CONTENT_TYPE
from fastmicro.security import CurrentUser, InvalidToken, PasswordHasher, TokenCodec
from fastmicro.settings import ServiceSettings
from fastmicro.testing import app_client
from fastmicro.web import create_app

SECRET = "kernel-test-secret-0123456789abcdef"
ISSUER = "kernel-issuer"
AUDIENCE = "kernel-audience"

router = APIRouter()


@router.get("/me")
async def me(user: CurrentUser) -> dict[str, str]:
    return {"user_id": str(user.user_id), "token_id": user.token_id}


def codec(*, secret: str = SECRET, issuer: str = ISSUER, audience: str = AUDIENCE, ttl: int = 600) -> TokenCodec:
    return TokenCodec(secret, algorithm="HS256", issuer=issuer, audience=audience, ttl_seconds=ttl)


def crafted(*, secret: str = SECRET, algorithm: str = "HS256", drop: str = "", **overrides: Any) -> str:
    """A token signed by hand, valid for `codec()` unless `overrides` or `drop` spoil it."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    claims.pop(drop, None)
    return jwt.encode(claims, secret, algorithm=algorithm)


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost_kib=1024, parallelism=1)


async def test_hash_verifies_the_right_password_only(hasher: PasswordHasher) -> None:
    password_hash = await hasher.hash("correct horse battery")

    assert await hasher.verify(password_hash, "correct horse battery")
    assert not await hasher.verify(password_hash, "correct horse battery ")
    assert not await hasher.verify(password_hash, "wrong")


async def test_hashes_are_salted_argon2id(hasher: PasswordHasher) -> None:
    first = await hasher.hash("same password")
    second = await hasher.hash("same password")

    assert first.startswith("$argon2id$")
    assert "same password" not in first
    assert first != second


@pytest.mark.parametrize("password_hash", [None, "", "not-a-hash", "$argon2id$v=19$garbage"])
async def test_verify_without_a_usable_hash_is_false(hasher: PasswordHasher, password_hash: str | None) -> None:
    assert await hasher.verify(password_hash, "any password") is False


async def test_needs_rehash_when_the_parameters_grow(hasher: PasswordHasher) -> None:
    password_hash = await hasher.hash("pw")

    assert not hasher.needs_rehash(password_hash)
    assert PasswordHasher(time_cost=2, memory_cost_kib=1024, parallelism=1).needs_rehash(password_hash)


def test_token_round_trip() -> None:
    user_id = uuid.uuid4()
    before = datetime.now(UTC)

    issued = codec(ttl=600).issue(user_id)
    principal = codec().verify(issued.access_token)

    assert principal.user_id == user_id
    assert principal.token_id
    assert issued.expires_in == 600
    assert before + timedelta(seconds=599) <= principal.expires_at <= datetime.now(UTC) + timedelta(seconds=600)


def test_each_token_has_its_own_id() -> None:
    user_id = uuid.uuid4()

    first, second = (codec().verify(codec().issue(user_id).access_token) for _ in range(2))

    assert first.token_id != second.token_id


def test_a_hand_crafted_valid_token_verifies() -> None:
    """The baseline the rejections below each spoil in one way."""
    user_id = uuid.uuid4()

    assert codec().verify(crafted(sub=str(user_id))).user_id == user_id


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(crafted(exp=datetime.now(UTC) - timedelta(seconds=5)), id="expired"),
        pytest.param(crafted(secret="another-secret-0123456789abcdefghij"), id="wrong-secret"),
        pytest.param(crafted(aud="someone-else"), id="wrong-audience"),
        pytest.param(crafted(iss="someone-else"), id="wrong-issuer"),
        pytest.param(crafted(secret="", algorithm="none"), id="alg-none"),
        pytest.param(crafted(secret=SECRET * 2, algorithm="HS512"), id="other-algorithm"),
        pytest.param(crafted(drop="exp"), id="missing-exp"),
        pytest.param(crafted(drop="sub"), id="missing-sub"),
        pytest.param(crafted(drop="jti"), id="missing-jti"),
        pytest.param(crafted(sub="not-a-uuid"), id="sub-not-a-uuid"),
        pytest.param(crafted(exp=2**62), id="exp-beyond-any-date"),
        pytest.param(crafted(exp=10**400), id="exp-beyond-any-float"),
        pytest.param(crafted(exp=float("inf")), id="exp-infinity"),
        pytest.param(crafted(exp=float("nan")), id="exp-nan"),
        pytest.param(crafted(iat=10**400), id="iat-beyond-any-float"),
        pytest.param(crafted(nbf=2**62), id="nbf-far-future"),
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        codec().verify(token)

    assert (caught.value.status, caught.value.code) == (401, "invalid_token")


def test_a_token_from_another_issuer_codec_is_invalid() -> None:
    token = codec(issuer="other-issuer").issue(uuid.uuid4()).access_token

    with pytest.raises(InvalidToken):
        codec().verify(token)


@pytest.fixture
async def client(kernel_settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(kernel_settings, title="security", routers=[router], roles=lambda _runtime: ())
    async with app_client(app) as client:
        yield client


def settings_codec(settings: ServiceSettings) -> TokenCodec:
    return TokenCodec(
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.jwt_ttl_seconds,
    )


async def test_current_user_accepts_a_token_made_with_the_settings(
    client: httpx.AsyncClient, kernel_settings: ServiceSettings
) -> None:
    user_id = uuid.uuid4()
    token = settings_codec(kernel_settings).issue(user_id).access_token

    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == str(user_id)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not_authenticated"),
        ({"Authorization": "Bearer "}, "not_authenticated"),
        ({"Authorization": "Bearer garbage"}, "invalid_token"),
        ({"Authorization": f"Bearer {crafted()}"}, "invalid_token"),  # signed with another secret
    ],
    ids=["missing", "basic", "empty-bearer", "garbage", "foreign-secret"],
)
async def test_current_user_refuses_with_401(client: httpx.AsyncClient, headers: dict[str, str], code: str) -> None:
    response = await client.get("/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == code
