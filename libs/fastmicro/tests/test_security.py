"""Passwords (argon2id) and the CurrentUser dependency (the tokens themselves: test_tokens.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from fastmicro.errors import PROBLEM_CONTENT_TYPE
from fastmicro.security import CurrentUser, PasswordHasher
from fastmicro.settings import ServiceSettings
from fastmicro.testing import app_client
from fastmicro.testing.tokens import new_signing_key, signer_for
from fastmicro.web import create_app

router = APIRouter()


def _foreign_token() -> str:
    """Well formed, named after the development key, signed by another: what an impostor can make."""
    settings = ServiceSettings(service_name="impostor", database_url="postgresql+asyncpg://unused/unused")
    return signer_for(settings, key=new_signing_key("dev-only-change-me")).issue(uuid.uuid4()).access_token


@router.get("/me")
async def me(user: CurrentUser) -> dict[str, str]:
    return {"user_id": str(user.user_id), "token_id": user.token_id}


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


@pytest.fixture
async def client(kernel_settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(kernel_settings, title="security", routers=[router], roles=lambda _runtime: ())
    async with app_client(app) as client:
        yield client


async def test_current_user_accepts_a_token_made_with_the_settings(
    client: httpx.AsyncClient, kernel_settings: ServiceSettings
) -> None:
    user_id = uuid.uuid4()
    token = signer_for(kernel_settings).issue(user_id).access_token

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
        ({"Authorization": f"Bearer {_foreign_token()}"}, "invalid_token"),
    ],
    ids=["missing", "basic", "empty-bearer", "garbage", "foreign-key"],
)
async def test_current_user_refuses_with_401(client: httpx.AsyncClient, headers: dict[str, str], code: str) -> None:
    response = await client.get("/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == code
