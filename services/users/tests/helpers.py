"""Assertions and token crafting shared by the users API tests."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt

from fastmicro.events import Envelope
from fastmicro.tokens import SigningKey
from users.settings import UsersSettings

from .conftest import Account

Register = Callable[..., Awaitable[Account]]

USER_FIELDS = {"id", "email", "name", "created_at", "updated_at"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with `status` and `code`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    if status == 401:
        assert response.headers.get("www-authenticate") == "Bearer"
    return body


def assert_validation_error(response: httpx.Response, *locs: list[Any]) -> list[dict[str, Any]]:
    """A 422 `validation_error` whose `errors` name every one of `locs`; returns the errors."""
    body = assert_problem(response, 422, "validation_error")
    errors: list[dict[str, Any]] = body["errors"]
    assert errors
    assert all(isinstance(error["msg"], str) and error["msg"] for error in errors)
    reported = [error["loc"] for error in errors]
    for loc in locs:
        assert loc in reported, reported
    return errors


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp in UTC, written with a trailing `Z`."""
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def assert_user(response: httpx.Response, status: int = 200, *, email: str, name: str) -> dict[str, Any]:
    """A `User` body, exactly its fields and nothing secret; returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == USER_FIELDS
    uuid.UUID(body["id"])
    assert body["email"] == email
    assert body["name"] == name
    assert parse_timestamp(body["created_at"]) <= parse_timestamp(body["updated_at"])
    assert "password" not in response.text
    assert "argon2" not in response.text
    return body


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", data={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(
    settings: UsersSettings, user_id: uuid.UUID, *, lifetime: timedelta = timedelta(minutes=5)
) -> dict[str, Any]:
    """The claims the service issues, for `user_id`, expiring `lifetime` from now."""
    now = datetime.now(UTC)
    return {
        "sub": str(user_id),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now - timedelta(minutes=10),
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }


def sign(settings: UsersSettings, payload: dict[str, Any], *, key: str | None = None) -> str:
    """`payload` signed with the service's key (or the private JWK `key`), as users signs it."""
    signing = SigningKey.from_json(key if key is not None else settings.jwt_signing_key.get_secret_value())
    return jwt.encode(payload, signing.key, algorithm=signing.algorithm, headers={"kid": signing.kid})


def for_user(user_id: uuid.UUID | str) -> Callable[[Envelope], bool]:
    return lambda envelope: envelope.data.get("user_id") == str(user_id)
