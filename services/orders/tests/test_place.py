"""POST /orders: placing an order, its validation, its authentication, and the OrderPlaced it emits."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
import jwt
import pytest

from fastmicro.db import utcnow
from fastmicro.messaging import Broker
from fastmicro.testing import catch_events
from fastmicro.testing.tokens import new_signing_key, signer_for
from fastmicro.tokens import DEV_SIGNING_KEY, TokenSigner
from orders.settings import OrdersSettings

from .conftest import NewCustomer
from .helpers import (
    TWO_ITEMS,
    assert_order,
    assert_problem,
    assert_validation_error,
    bearer,
    of_order,
    of_user,
    parse_timestamp,
)

ITEM = {"sku": "SKU-1", "quantity": 1, "unit_price": 100}


async def test_place_answers_201_with_the_order_and_server_computed_totals(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice = new_customer()
    response = await client.post("/orders", json={"items": TWO_ITEMS, "currency": "EUR"}, headers=alice.auth)
    order = assert_order(response, 201)
    assert order["user_id"] == str(alice.id)
    assert order["status"] == "placed"
    assert order["currency"] == "EUR"
    assert order["items"] == [
        {"sku": "BOOK-1", "quantity": 3, "unit_price": 250, "line_total": 750},
        {"sku": "PEN-2", "quantity": 1, "unit_price": 1999, "line_total": 1999},
    ]
    assert order["total"] == 2749
    assert (await client.get(f"/orders/{order['id']}", headers=alice.auth)).json() == order


async def test_place_defaults_the_currency_to_usd(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    order = assert_order(await client.post("/orders", json={"items": [ITEM]}, headers=new_customer().auth), 201)
    assert order["currency"] == "USD"
    assert order["total"] == 100


async def test_place_keeps_the_items_in_the_order_given(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    items = [{"sku": f"SKU-{n:03}", "quantity": 1 + n % 7, "unit_price": 1000 - n} for n in range(100)]
    order = assert_order(await client.post("/orders", json={"items": items}, headers=new_customer().auth), 201)
    assert [item["sku"] for item in order["items"]] == [item["sku"] for item in items]
    assert [item["line_total"] for item in order["items"]] == [(1 + n % 7) * (1000 - n) for n in range(100)]
    assert order["total"] == sum((1 + n % 7) * (1000 - n) for n in range(100))


async def test_place_accepts_the_largest_amounts_exactly(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    """100 lines of 10 000 x 10 000 000 000: a total of 10^16, exact (beyond a double's integers)."""
    items = [{"sku": f"GOLD-{n}", "quantity": 10_000, "unit_price": 10_000_000_000} for n in range(100)]
    order = assert_order(await client.post("/orders", json={"items": items}, headers=new_customer().auth), 201)
    assert all(item["line_total"] == 100_000_000_000_000 for item in order["items"])
    assert order["total"] == 10_000_000_000_000_000


async def test_place_accepts_a_free_item_and_strips_the_sku(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    items = [{"sku": "  GIFT  ", "quantity": 2, "unit_price": 0}, {"sku": "S" * 64, "quantity": 1, "unit_price": 5}]
    order = assert_order(await client.post("/orders", json={"items": items}, headers=new_customer().auth), 201)
    assert order["items"] == [
        {"sku": "GIFT", "quantity": 2, "unit_price": 0, "line_total": 0},
        {"sku": "S" * 64, "quantity": 1, "unit_price": 5, "line_total": 5},
    ]
    assert order["total"] == 5


async def test_place_sets_both_timestamps_to_now(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    order = assert_order(await client.post("/orders", json={"items": [ITEM]}, headers=new_customer().auth), 201)
    created, updated = parse_timestamp(order["created_at"]), parse_timestamp(order["updated_at"])
    assert created == updated
    assert utcnow() - timedelta(seconds=30) < created <= utcnow()


BAD_INPUT: list[tuple[Any, list[Any]]] = [
    ({"items": []}, ["body", "items"]),
    ({"items": [ITEM] * 101}, ["body", "items"]),
    ({"items": [{**ITEM, "quantity": 0}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{**ITEM, "quantity": -1}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{**ITEM, "quantity": 10_001}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{**ITEM, "unit_price": -1}]}, ["body", "items", 0, "unit_price"]),
    ({"items": [{**ITEM, "unit_price": 10_000_000_001}]}, ["body", "items", 0, "unit_price"]),
    ({"items": [{**ITEM, "quantity": "5"}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{**ITEM, "quantity": 1.5}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{**ITEM, "quantity": True}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{**ITEM, "quantity": None}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{**ITEM, "unit_price": "100"}]}, ["body", "items", 0, "unit_price"]),
    ({"items": [{**ITEM, "unit_price": False}]}, ["body", "items", 0, "unit_price"]),
    ({"items": [{"quantity": 1, "unit_price": 100}]}, ["body", "items", 0, "sku"]),
    ({"items": [{"sku": "A", "unit_price": 100}]}, ["body", "items", 0, "quantity"]),
    ({"items": [{"sku": "A", "quantity": 1}]}, ["body", "items", 0, "unit_price"]),
    ({"items": [{**ITEM, "sku": ""}]}, ["body", "items", 0, "sku"]),
    ({"items": [{**ITEM, "sku": "   "}]}, ["body", "items", 0, "sku"]),
    ({"items": [{**ITEM, "sku": "S" * 65}]}, ["body", "items", 0, "sku"]),
    ({"items": [{**ITEM, "sku": "A\u0000B"}]}, ["body", "items", 0, "sku"]),
    ({"items": [{**ITEM, "sku": 123}]}, ["body", "items", 0, "sku"]),
    ({"items": [ITEM, {**ITEM, "line_total": 1}]}, ["body", "items", 1, "line_total"]),
    ({"items": [ITEM], "total": 1}, ["body", "total"]),
    ({"items": [ITEM], "currency": "usd"}, ["body", "currency"]),
    ({"items": [ITEM], "currency": "XYZ"}, ["body", "currency"]),
    ({"items": [ITEM], "currency": "XXX"}, ["body", "currency"]),
    ({"items": [ITEM], "currency": "HRK"}, ["body", "currency"]),
    ({"items": [ITEM], "currency": "US"}, ["body", "currency"]),
    ({"items": [ITEM], "currency": "USDD"}, ["body", "currency"]),
    ({"items": [ITEM], "currency": ""}, ["body", "currency"]),
    ({"items": [ITEM], "currency": None}, ["body", "currency"]),
    ({"items": [ITEM], "currency": 840}, ["body", "currency"]),
    ({"currency": "USD"}, ["body", "items"]),
    ({"items": None}, ["body", "items"]),
    ({"items": "SKU-1"}, ["body", "items"]),
    ({"items": {"sku": "A", "quantity": 1, "unit_price": 1}}, ["body", "items"]),
    ({"items": ["SKU-1"]}, ["body", "items", 0]),
]


@pytest.mark.parametrize(
    ("body", "loc"),
    BAD_INPUT,
    ids=[
        "no-items",
        "101-items",
        "quantity-0",
        "quantity-negative",
        "quantity-10001",
        "price-negative",
        "price-too-large",
        "quantity-string",
        "quantity-fraction",
        "quantity-bool",
        "quantity-null",
        "price-string",
        "price-bool",
        "sku-missing",
        "quantity-missing",
        "price-missing",
        "sku-empty",
        "sku-blank",
        "sku-65",
        "sku-nul",
        "sku-int",
        "item-line-total",
        "client-total",
        "currency-lower-case",
        "currency-unknown",
        "currency-no-currency",
        "currency-withdrawn",
        "currency-2",
        "currency-4",
        "currency-empty",
        "currency-null",
        "currency-int",
        "items-missing",
        "items-null",
        "items-string",
        "items-object",
        "item-string",
    ],
)
async def test_place_refuses_invalid_input(
    client: httpx.AsyncClient, new_customer: NewCustomer, body: dict[str, Any], loc: list[Any]
) -> None:
    alice = new_customer()
    assert_validation_error(await client.post("/orders", json=body, headers=alice.auth), loc)
    assert (await client.get("/orders", headers=alice.auth)).json()["total"] == 0  # nothing was stored


@pytest.mark.parametrize("document", [b"{bad", b'{"items": [', b"", b"[]", b"null", b'"items"', b"42"])
async def test_place_refuses_a_body_that_is_not_a_json_object(
    client: httpx.AsyncClient, new_customer: NewCustomer, document: bytes
) -> None:
    alice = new_customer()
    headers = {**alice.auth, "Content-Type": "application/json"}
    errors = assert_validation_error(await client.post("/orders", content=document, headers=headers))
    assert all(error["loc"][0] == "body" for error in errors)
    assert (await client.get("/orders", headers=alice.auth)).json()["total"] == 0


async def test_place_emits_exactly_one_order_placed_with_the_request_id(
    client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice, request_id = new_customer(), f"req-{uuid.uuid4().hex}"
    async with catch_events(test_broker, "orders.#") as catcher:
        response = await client.post(
            "/orders", json={"items": TWO_ITEMS, "currency": "JPY"}, headers={**alice.auth, "X-Request-ID": request_id}
        )
        order = assert_order(response, 201)
        assert response.headers["x-request-id"] == request_id
        await catcher.wait_for(of_order(order["id"]))
        await catcher.settle(0.5)
    [(_, message)] = catcher.matching(of_order(order["id"]))

    envelope = json.loads(message.body)
    assert set(envelope) == {"id", "type", "version", "source", "occurred_at", "correlation_id", "causation_id", "data"}
    uuid.UUID(envelope["id"])
    assert envelope["type"] == "OrderPlaced"
    assert envelope["version"] == 2
    assert envelope["source"] == "orders"
    parse_timestamp(envelope["occurred_at"])
    assert envelope["correlation_id"] == request_id
    assert envelope["causation_id"] is None
    assert envelope["data"] == {
        "order_id": order["id"],
        "user_id": str(alice.id),
        "items": [
            {"sku": "BOOK-1", "quantity": 3, "unit_price": 250},
            {"sku": "PEN-2", "quantity": 1, "unit_price": 1999},
        ],
        "total": {"amount": "2749", "currency": "JPY"},  # JPY has no minor unit: no decimals
    }
    assert message.routing_key == "orders.OrderPlaced"
    assert message.message_id == envelope["id"]
    assert message.type == "OrderPlaced"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_refused_input_emits_nothing(
    client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice = new_customer()
    async with catch_events(test_broker, "orders.#") as catcher:
        assert_validation_error(await client.post("/orders", json={"items": []}, headers=alice.auth))
        await client.post("/orders", json={"items": [ITEM]}, headers=alice.auth)  # a control that is emitted
        await catcher.wait_for(lambda envelope: envelope.data.get("user_id") == str(alice.id))
        await catcher.settle(0.5)
    assert len(catcher.matching(of_user(alice.id))) == 1  # this test's events only: not another test's, late


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no-header", "empty-bearer", "basic"],
)
async def test_place_without_a_bearer_token_is_not_authenticated(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_problem(await client.post("/orders", json={"items": [ITEM]}, headers=headers), 401, "not_authenticated")


def _codec(settings: OrdersSettings, *, key: str = DEV_SIGNING_KEY, ttl_seconds: int = 60) -> TokenSigner:
    return signer_for(settings, key=key, ttl_seconds=ttl_seconds)


async def test_place_refuses_a_bad_token(
    client: httpx.AsyncClient, orders_settings: OrdersSettings, test_broker: Broker
) -> None:
    user_id = uuid.uuid4()
    forged = _codec(orders_settings, key=new_signing_key("dev-only-change-me")).issue(user_id).access_token
    expired = _codec(orders_settings, ttl_seconds=-10).issue(user_id).access_token
    unsigned = jwt.encode({"sub": str(user_id)}, "", algorithm="none")
    async with catch_events(test_broker, "orders.#") as catcher:
        for token in ("not.a.jwt", forged, expired, unsigned):
            response = await client.post("/orders", json={"items": [ITEM]}, headers=bearer(token))
            assert_problem(response, 401, "invalid_token")
        # The control: the same request with a good token is accepted.
        good = _codec(orders_settings).issue(user_id).access_token
        assert (await client.post("/orders", json={"items": [ITEM]}, headers=bearer(good))).status_code == 201
        await catcher.wait_for(lambda envelope: envelope.data.get("user_id") == str(user_id))
        await catcher.settle(0.5)
    assert len(catcher.matching(of_user(user_id))) == 1  # this test's events only: not another test's, late
