"""Idempotency-Key on POST /orders and its cancel: a retry gets the first answer, and the work happens once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from fastmicro.testing.locks import wait_for_an_advisory_lock_waiter

from .conftest import Customer, NewCustomer
from .helpers import TWO_ITEMS, assert_order, assert_problem, assert_validation_error

ONE_ITEM = [{"sku": "PEN-2", "quantity": 1, "unit_price": 1999}]


def keyed(customer: Customer, key: str) -> dict[str, str]:
    return {**customer.auth, "Idempotency-Key": key}


async def orders_of(client: httpx.AsyncClient, customer: Customer) -> int:
    total: int = (await client.get("/orders", headers=customer.auth)).json()["total"]
    return total


async def placed_events(app: FastAPI, order_ids: list[str]) -> int:
    """OrderPlaced rows in the outbox for these orders: the work's other half."""
    async with app.state.runtime.engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM outbox WHERE payload->'data'->>'order_id' = ANY(:ids)"), {"ids": order_ids}
        )
    return int(count or 0)


async def test_a_retry_with_the_same_key_and_body_gets_the_first_answer_and_places_nothing(
    app: FastAPI, client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice = new_customer()
    body: dict[str, Any] = {"items": TWO_ITEMS, "currency": "EUR"}
    first = await client.post("/orders", json=body, headers=keyed(alice, "order-1"))
    # The same body, spaced and ordered differently: the same request.
    retry = await client.post(
        "/orders",
        content=b'{ "currency": "EUR",  "items": ' + httpx.Response(200, json=TWO_ITEMS).content + b"}",
        headers={**keyed(alice, "order-1"), "content-type": "application/json"},
    )
    assert_order(first, 201)
    assert_order(retry, 201)
    assert retry.json() == first.json()
    assert "idempotent-replayed" not in first.headers
    assert retry.headers["idempotent-replayed"] == "true"
    assert await orders_of(client, alice) == 1
    assert await placed_events(app, [first.json()["id"]]) == 1


async def test_the_same_key_with_another_body_is_refused(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    alice = new_customer()
    assert_order(await client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(alice, "k")), 201)
    reused = await client.post("/orders", json={"items": ONE_ITEM}, headers=keyed(alice, "k"))
    assert_problem(reused, 422, "idempotency_key_reused")
    # ... and on another route: the key names one request.
    order_id = (await client.get("/orders", headers=alice.auth)).json()["items"][0]["id"]
    assert_problem(
        await client.post(f"/orders/{order_id}/cancel", headers=keyed(alice, "k")), 422, "idempotency_key_reused"
    )
    assert await orders_of(client, alice) == 1


async def test_keys_belong_to_their_caller(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    alice, bob = new_customer(), new_customer()
    theirs = await client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(alice, "shared"))
    mine = await client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(bob, "shared"))
    assert assert_order(mine, 201)["user_id"] == str(bob.id)
    assert "idempotent-replayed" not in mine.headers
    assert mine.json()["id"] != theirs.json()["id"]


async def test_without_a_key_every_request_places_an_order(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice = new_customer()
    for _ in range(2):
        assert_order(await client.post("/orders", json={"items": TWO_ITEMS}, headers=alice.auth), 201)
    assert await orders_of(client, alice) == 2


async def test_a_key_longer_than_255_characters_is_invalid(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice = new_customer()
    assert_order(await client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(alice, "k" * 255)), 201)
    too_long = await client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(alice, "k" * 256))
    assert_validation_error(too_long, ["header", "Idempotency-Key"])
    assert await orders_of(client, alice) == 1


async def test_twenty_concurrent_retries_place_one_order_and_all_get_its_answer(
    app: FastAPI, client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice = new_customer()
    responses = await asyncio.gather(
        *(client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(alice, "race")) for _ in range(20))
    )
    assert [response.status_code for response in responses] == [201] * 20, [r.text for r in responses]
    assert len({response.text for response in responses}) == 1  # one answer, byte for byte
    assert sum(response.headers.get("idempotent-replayed") == "true" for response in responses) == 19
    assert await orders_of(client, alice) == 1
    assert await placed_events(app, [responses[0].json()["id"]]) == 1


async def test_a_retry_while_the_first_is_still_running_is_told_so_past_the_bound(
    app: FastAPI, client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    """The first request's transaction is held open (as a slow one would): the retry waits, then 409."""
    alice = new_customer()
    bound = app.state.runtime.settings.idempotency_wait_seconds
    async with app.state.runtime.engine.connect() as first:
        await first.execute(
            text("SELECT * FROM idempotency_claim(:scope, 'slow', 1000, 3600)"), {"scope": str(alice.id)}
        )
        started = asyncio.get_running_loop().time()
        retry = asyncio.create_task(client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(alice, "slow")))
        await wait_for_an_advisory_lock_waiter(app.state.runtime.engine)
        response = await retry
        waited = asyncio.get_running_loop().time() - started
        await first.rollback()
    assert_problem(response, 409, "request_in_progress")
    assert response.headers["retry-after"] == "1"
    assert waited >= bound
    assert await orders_of(client, alice) == 0
    # The first gave up without an answer: the key is free, and the retry places the order.
    assert_order(await client.post("/orders", json={"items": TWO_ITEMS}, headers=keyed(alice, "slow")), 201)
    assert await orders_of(client, alice) == 1


async def test_a_cancel_retried_gets_its_first_answer_not_a_conflict(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice = new_customer()
    order = assert_order(await client.post("/orders", json={"items": TWO_ITEMS}, headers=alice.auth), 201)
    first = await client.post(f"/orders/{order['id']}/cancel", headers=keyed(alice, "cancel-1"))
    retry = await client.post(f"/orders/{order['id']}/cancel", headers=keyed(alice, "cancel-1"))
    assert assert_order(first)["status"] == "cancelled"
    assert (retry.status_code, retry.json(), retry.headers["idempotent-replayed"]) == (200, first.json(), "true")
    # A new key asks again, and the order is cancelled already.
    again = await client.post(f"/orders/{order['id']}/cancel", headers=keyed(alice, "cancel-2"))
    assert_problem(again, 409, "order_not_cancellable")


async def test_a_client_error_is_replayed(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    """A 4xx answer is the request's answer: a retry gets it again, even once the state would allow more."""
    alice = new_customer()
    missing = uuid.uuid4()
    first = await client.post(f"/orders/{missing}/cancel", headers=keyed(alice, "missing"))
    retry = await client.post(f"/orders/{missing}/cancel", headers=keyed(alice, "missing"))
    assert_problem(first, 404, "order_not_found")
    assert_problem(retry, 404, "order_not_found")
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
