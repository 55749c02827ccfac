"""POST /users: registration, its validation and its conflicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import PASSWORD, unique_email
from .helpers import assert_problem, assert_user, assert_validation_error, login


def payload(**overrides: Any) -> dict[str, Any]:
    return {"email": unique_email(), "password": PASSWORD, "name": "Ada Lovelace", **overrides}


async def test_register_answers_201_with_the_user(client: httpx.AsyncClient) -> None:
    body = payload()
    response = await client.post("/users", json=body)
    assert_user(response, 201, email=body["email"], name="Ada Lovelace")
    assert PASSWORD not in response.text


async def test_register_stores_the_email_lower_cased(client: httpx.AsyncClient) -> None:
    email = f"Mixed.Case-{unique_email()}".upper()
    response = await client.post("/users", json=payload(email=email))
    assert_user(response, 201, email=email.lower(), name="Ada Lovelace")
    assert (await login(client, email.lower(), PASSWORD)).status_code == 200


@pytest.mark.parametrize("password_length", [8, 128])
async def test_register_accepts_a_password_at_either_length_bound(
    client: httpx.AsyncClient, password_length: int
) -> None:
    password = "p" * password_length
    body = payload(password=password)
    assert_user(await client.post("/users", json=body), 201, email=body["email"], name="Ada Lovelace")
    assert (await login(client, body["email"], password)).status_code == 200


async def test_register_accepts_a_100_char_name(client: httpx.AsyncClient) -> None:
    body = payload(name="n" * 100)
    assert_user(await client.post("/users", json=body), 201, email=body["email"], name="n" * 100)


@pytest.mark.parametrize("spelling", [str.lower, str.upper, str.title], ids=["same", "upper", "title"])
async def test_register_refuses_a_taken_email_case_insensitively(
    client: httpx.AsyncClient, spelling: Callable[[str], str]
) -> None:
    email = unique_email()
    assert (await client.post("/users", json=payload(email=email))).status_code == 201
    response = await client.post("/users", json=payload(email=spelling(email), name="Someone Else"))
    assert_problem(response, 409, "email_taken")


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"email": "not-an-email"}, ["body", "email"]),
        ({"password": "Sh0rt!x"}, ["body", "password"]),
        ({"password": "L" * 129}, ["body", "password"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "   "}, ["body", "name"]),
        ({"name": "n" * 101}, ["body", "name"]),
        ({"email": None}, ["body", "email"]),
        ({"name": 123}, ["body", "name"]),
        ({"password": ["correct", "horse", "battery"]}, ["body", "password"]),
        ({"role": "admin"}, ["body", "role"]),
    ],
    ids=[
        "bad-email",
        "password-7",
        "password-129",
        "name-empty",
        "name-blank",
        "name-101",
        "email-null",
        "name-int",
        "password-list",
        "extra-field",
    ],
)
async def test_register_refuses_invalid_input(
    client: httpx.AsyncClient, changes: dict[str, Any], loc: list[Any]
) -> None:
    body = payload(**changes)
    response = await client.post("/users", json=body)
    assert_validation_error(response, loc)
    if isinstance(body["password"], str):
        assert body["password"] not in response.text


@pytest.mark.parametrize("missing", ["email", "password", "name"])
async def test_register_refuses_a_missing_field(client: httpx.AsyncClient, missing: str) -> None:
    body = payload()
    del body[missing]
    assert_validation_error(await client.post("/users", json=body), ["body", missing])


async def test_register_stores_nothing_when_input_is_refused(client: httpx.AsyncClient) -> None:
    body = payload(name="")
    assert_validation_error(await client.post("/users", json=body), ["body", "name"])
    assert_problem(await login(client, body["email"], PASSWORD), 401, "invalid_credentials")
    assert (await client.post("/users", json=payload(email=body["email"]))).status_code == 201


async def test_register_refuses_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", content=b"{bad", headers={"Content-Type": "application/json"})
    errors = assert_validation_error(response)
    assert errors[0]["loc"][0] == "body"


@pytest.mark.parametrize("document", [b"[]", b'["a@example.com"]', b'"text"', b"42", b"null"])
async def test_register_refuses_json_that_is_not_an_object(client: httpx.AsyncClient, document: bytes) -> None:
    response = await client.post("/users", content=document, headers={"Content-Type": "application/json"})
    errors = assert_validation_error(response)
    assert all(error["loc"][0] == "body" for error in errors)
