"""POST /users with an Idempotency-Key: scoped to the key and the body, since no one is signed in yet."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from users.settings import UsersSettings

from .conftest import PASSWORD, unique_email
from .helpers import assert_problem, assert_user


def payload(**overrides: Any) -> dict[str, Any]:
    return {"email": unique_email(), "password": PASSWORD, "name": "Ada Lovelace", **overrides}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def created_events(settings: UsersSettings, email: str) -> int:
    """UserCreated rows in the outbox for `email`: the registration's other half."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            count = await conn.scalar(
                text(
                    "SELECT count(*) FROM outbox"
                    " WHERE routing_key = 'users.UserCreated' AND payload->'data'->>'email' = :email"
                ),
                {"email": email},
            )
    finally:
        await engine.dispose()
    return int(count or 0)


async def test_a_retried_registration_gets_the_first_answer_not_email_taken(
    users_settings: UsersSettings, client: httpx.AsyncClient
) -> None:
    body = payload()
    first = await client.post("/users", json=body, headers=key("signup-1"))
    retry = await client.post("/users", json=body, headers=key("signup-1"))
    assert_user(first, 201, email=body["email"], name="Ada Lovelace")
    assert (retry.status_code, retry.json(), retry.headers["idempotent-replayed"]) == (201, first.json(), "true")
    assert await created_events(users_settings, body["email"]) == 1
    # Without the key, the same body is a second registration: refused.
    assert_problem(await client.post("/users", json=body), 409, "email_taken")


async def test_the_key_is_scoped_to_the_body(client: httpx.AsyncClient) -> None:
    """Two people choosing the same key do not meet: another body under it is a registration of its own."""
    ada, grace = payload(), payload(name="Grace Hopper")
    first = await client.post("/users", json=ada, headers=key("my-key"))
    second = await client.post("/users", json=grace, headers=key("my-key"))
    assert_user(first, 201, email=ada["email"], name="Ada Lovelace")
    assert_user(second, 201, email=grace["email"], name="Grace Hopper")
    assert "idempotent-replayed" not in second.headers


async def test_a_conflict_is_replayed(client: httpx.AsyncClient) -> None:
    body = payload()
    assert (await client.post("/users", json=body)).status_code == 201
    first = await client.post("/users", json=body, headers=key("late"))
    retry = await client.post("/users", json=body, headers=key("late"))
    assert_problem(first, 409, "email_taken")
    assert_problem(retry, 409, "email_taken")
    assert retry.headers["idempotent-replayed"] == "true"


async def test_concurrent_retries_register_once(users_settings: UsersSettings, client: httpx.AsyncClient) -> None:
    body = payload()
    responses = await asyncio.gather(*(client.post("/users", json=body, headers=key("burst")) for _ in range(5)))
    assert [response.status_code for response in responses] == [201] * 5, [r.text for r in responses]
    assert len({response.text for response in responses}) == 1
    assert await created_events(users_settings, body["email"]) == 1


async def test_what_is_stored_of_a_registration_cannot_be_checked_against_a_guessed_password(
    users_settings: UsersSettings, client: httpx.AsyncClient
) -> None:
    """The body holds a password: its fingerprint (and the scope made of it) is keyed with a secret
    the database does not hold, never the plain hash a copy of the table could test guesses with."""
    body, chosen = payload(), f"stored-{uuid.uuid4()}"
    assert (await client.post("/users", json=body, headers=key(chosen))).status_code == 201
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    plain = hashlib.sha256(b"\n".join((b"POST", b"/users", canonical))).digest()
    engine = create_async_engine(users_settings.database_url)
    try:
        async with engine.connect() as conn:
            query = text("SELECT scope, fingerprint FROM idempotency_keys WHERE key = :key")
            row = (await conn.execute(query, {"key": chosen})).one()
    finally:
        await engine.dispose()
    assert bytes(row.fingerprint) != plain
    assert row.scope != plain.hex()
    assert len(bytes(row.fingerprint)) == len(plain)  # a SHA-256 HMAC
