"""Every error a client can meet is an RFC 9457 problem with a stable code, and nothing internal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http import HTTPStatus

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, Field

from fastmicro.errors import (
    PROBLEM_CONTENT_TYPE,
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NotFoundError,
    ServiceUnavailable,
    ValidationError,
)
from fastmicro.settings import ServiceSettings
from fastmicro.testing import app_client
from fastmicro.web import create_app

INTERNALS = "password=hunter2 at db-primary.internal:5432"

router = APIRouter()


class NewThing(BaseModel):
    name: str = Field(min_length=1)
    quantity: int = Field(ge=1)


@router.get("/not-found")
async def not_found() -> None:
    raise NotFoundError("Thing not found", code="thing_not_found", thing_id="t-1")


@router.get("/conflict")
async def conflict() -> None:
    raise ConflictError(code="x")


@router.get("/invalid")
async def invalid() -> None:
    raise ValidationError("Quantity exceeds stock", code="insufficient_stock")


@router.get("/unauthenticated")
async def unauthenticated() -> None:
    raise AuthenticationError()


@router.get("/forbidden")
async def forbidden() -> None:
    raise AuthorizationError()


@router.get("/unavailable")
async def unavailable() -> None:
    raise ServiceUnavailable()


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError(INTERNALS)


@router.post("/things", status_code=201)
async def create_thing(thing: NewThing) -> NewThing:
    return thing


@router.get("/things/special")
async def special_thing() -> dict[str, str]:
    return {"name": "special"}


@router.get("/things/{thing_id}")
async def get_thing(thing_id: int) -> dict[str, int]:
    return {"id": thing_id}


@router.delete("/things/{thing_id}", status_code=204)
async def delete_thing(thing_id: int) -> None:
    return None


@pytest.fixture
async def client(kernel_settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(
        create_app(kernel_settings, title="errors", routers=[router], roles=lambda _runtime: ())
    ) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, object] = response.json()
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/not-found", 404, "thing_not_found"),
        ("GET", "/conflict", 409, "x"),
        ("GET", "/invalid", 422, "insufficient_stock"),
        ("GET", "/unauthenticated", 401, "not_authenticated"),
        ("GET", "/forbidden", 403, "forbidden"),
        ("GET", "/unavailable", 503, "service_unavailable"),
        ("GET", "/crash", 500, "internal_error"),
        ("GET", "/no/such/path", 404, "not_found"),
        ("DELETE", "/conflict", 405, "method_not_allowed"),
        ("POST", "/things", 422, "validation_error"),
    ],
)
async def test_every_error_is_a_problem(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path, json={})

    assert_problem(response, status, code)


async def test_app_error_carries_its_detail_and_extra_fields(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/not-found"), 404, "thing_not_found")

    assert body["detail"] == "Thing not found"
    assert body["thing_id"] == "t-1"


async def test_authentication_error_asks_for_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/unauthenticated")

    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_only_401_asks_for_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/forbidden")

    assert "www-authenticate" not in response.headers


async def test_unexpected_error_is_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/crash")

    body = assert_problem(response, 500, "internal_error")
    assert body["detail"] == "An unexpected error occurred"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text


async def test_validation_error_lists_each_field_without_echoing_input(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", json={"name": "", "quantity": 0, "secret": "hunter2"})

    body = assert_problem(response, 422, "validation_error")
    assert isinstance(body["errors"], list)
    assert sorted(error["loc"] for error in body["errors"]) == [["body", "name"], ["body", "quantity"]]
    assert all(error["msg"] for error in body["errors"])
    assert "hunter2" not in response.text
    assert all("input" not in error for error in body["errors"])


async def test_malformed_json_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", content=b'{"name": ', headers={"content-type": "application/json"})

    body = assert_problem(response, 422, "validation_error")
    assert isinstance(body["errors"], list)
    assert body["errors"][0]["loc"][0] == "body"


async def test_valid_body_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", json={"name": "bolt", "quantity": 3})

    assert response.status_code == 201
    assert response.json() == {"name": "bolt", "quantity": 3}


async def test_wrong_method_names_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.put("/things", json={"name": "bolt", "quantity": 3})

    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/things/7", "DELETE, GET"),  # two routes serve the path: Allow names both
        ("PUT", "/things/7", "DELETE, GET"),
        ("DELETE", "/things/special", "GET"),  # the literal path is its own resource, not thing "special"
        ("PATCH", "/things/special", "GET"),
        ("OPTIONS", "/health/live", "GET"),
    ],
)
async def test_wrong_method_is_405_with_every_method_of_the_resource(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)

    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


async def test_a_right_method_reaches_its_route(client: httpx.AsyncClient) -> None:
    assert (await client.get("/things/special")).json() == {"name": "special"}
    assert (await client.delete("/things/7")).status_code == 204
    assert_problem(await client.get("/things/seven"), 422, "validation_error")


@pytest.mark.parametrize(
    "content",
    [b'{"name": "\xff\xfe"}', b"\xff", b"[" * 100_000 + b"]" * 100_000],
    ids=["not-utf-8", "a-stray-byte", "nested-too-deep"],
)
async def test_a_body_that_cannot_be_read_is_422_not_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/things", content=content, headers={"content-type": "application/json"})

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"] == [
        {"loc": ["body"], "msg": "There was an error parsing the body", "type": "body_unreadable"}
    ]
