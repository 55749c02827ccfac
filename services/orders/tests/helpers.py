"""Assertions and requests shared by the orders tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from fastmicro.events import Envelope

from .conftest import Customer

ORDER_FIELDS = {"id", "user_id", "status", "items", "total", "currency", "created_at", "updated_at"}
ITEM_FIELDS = {"sku", "quantity", "unit_price", "line_total"}

#: Line totals 750 and 1999: a total of 2749.
TWO_ITEMS: list[dict[str, Any]] = [
    {"sku": "BOOK-1", "quantity": 3, "unit_price": 250},
    {"sku": "PEN-2", "quantity": 1, "unit_price": 1999},
]


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
        assert response.headers["www-authenticate"] == "Bearer"
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


def assert_order(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """An `Order` body: exactly its fields, well-formed; returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert_order_shape(body)
    return body


def assert_order_shape(body: dict[str, Any]) -> None:
    assert set(body) == ORDER_FIELDS
    uuid.UUID(body["id"])
    uuid.UUID(body["user_id"])
    assert body["status"] in {"placed", "cancelled"}
    assert body["items"]
    for item in body["items"]:
        assert set(item) == ITEM_FIELDS
    assert parse_timestamp(body["created_at"]) <= parse_timestamp(body["updated_at"])


async def place(
    client: httpx.AsyncClient, customer: Customer, items: Sequence[dict[str, Any]] = TWO_ITEMS, **extra: Any
) -> dict[str, Any]:
    """Place an order as `customer`; returns the `Order`."""
    response = await client.post("/orders", json={"items": list(items), **extra}, headers=customer.auth)
    return assert_order(response, 201)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def of_order(order_id: str | uuid.UUID) -> Callable[[Envelope], bool]:
    return lambda envelope: envelope.data.get("order_id") == str(order_id)


def of_user(user_id: str | uuid.UUID) -> Callable[[Envelope], bool]:
    return lambda envelope: envelope.data.get("user_id") == str(user_id)
