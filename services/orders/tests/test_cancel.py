"""POST /orders/{id}/cancel: own orders only, once, and the OrderCancelled it emits."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from fastmicro.messaging import Broker
from fastmicro.testing import catch_events

from .conftest import NewCustomer
from .helpers import assert_order, assert_problem, assert_validation_error, of_order, parse_timestamp, place


async def test_cancel_answers_the_order_cancelled(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    alice = new_customer()
    order = await place(client, alice)
    cancelled = assert_order(await client.post(f"/orders/{order['id']}/cancel", headers=alice.auth))
    assert cancelled["status"] == "cancelled"
    unchanged = {key: value for key, value in order.items() if key not in {"status", "updated_at"}}
    assert {key: value for key, value in cancelled.items() if key not in {"status", "updated_at"}} == unchanged
    assert parse_timestamp(cancelled["updated_at"]) > parse_timestamp(order["updated_at"])
    assert (await client.get(f"/orders/{order['id']}", headers=alice.auth)).json() == cancelled


async def test_cancelling_twice_is_a_conflict(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    alice = new_customer()
    order = await place(client, alice)
    cancelled = assert_order(await client.post(f"/orders/{order['id']}/cancel", headers=alice.auth))
    assert_problem(await client.post(f"/orders/{order['id']}/cancel", headers=alice.auth), 409, "order_not_cancellable")
    assert (await client.get(f"/orders/{order['id']}", headers=alice.auth)).json() == cancelled


async def test_concurrent_cancels_succeed_once(
    client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice = new_customer()
    order = await place(client, alice)
    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        responses = await asyncio.gather(
            *(client.post(f"/orders/{order['id']}/cancel", headers=alice.auth) for _ in range(5))
        )
        await catcher.wait_for(of_order(order["id"]))
        await catcher.settle(0.5)
    assert sorted(response.status_code for response in responses) == [200, 409, 409, 409, 409]
    assert len(catcher.matching(of_order(order["id"]))) == 1


async def test_cancel_answers_someone_elses_order_as_not_found(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice, mallory = new_customer(), new_customer()
    order = await place(client, alice)
    theirs = assert_problem(
        await client.post(f"/orders/{order['id']}/cancel", headers=mallory.auth), 404, "order_not_found"
    )
    absent = assert_problem(
        await client.post(f"/orders/{uuid.uuid4()}/cancel", headers=mallory.auth), 404, "order_not_found"
    )
    assert theirs == absent
    assert (await client.get(f"/orders/{order['id']}", headers=alice.auth)).json() == order


async def test_cancel_refuses_an_id_that_is_not_a_uuid(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    response = await client.post("/orders/12345/cancel", headers=new_customer().auth)
    assert_validation_error(response, ["path", "order_id"])


async def test_cancel_needs_a_token(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    alice = new_customer()
    order = await place(client, alice)
    assert_problem(await client.post(f"/orders/{order['id']}/cancel"), 401, "not_authenticated")
    assert (await client.get(f"/orders/{order['id']}", headers=alice.auth)).json()["status"] == "placed"


async def test_cancel_emits_order_cancelled_requested(
    client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice, request_id = new_customer(), f"req-{uuid.uuid4().hex}"
    order = await place(client, alice)
    # Only OrderCancelled: the OrderPlaced of `place` may still be on its way from the relay.
    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        response = await client.post(
            f"/orders/{order['id']}/cancel", headers={**alice.auth, "X-Request-ID": request_id}
        )
        assert response.status_code == 200, response.text
        await catcher.wait_for(of_order(order["id"]))
        await catcher.settle(0.5)
    [(envelope, message)] = catcher.matching(of_order(order["id"]))
    assert envelope.type == "OrderCancelled"
    assert envelope.version == 1
    assert envelope.source == "orders"
    assert envelope.data == {"order_id": order["id"], "user_id": str(alice.id), "reason": "requested"}
    assert envelope.correlation_id == request_id
    assert envelope.causation_id is None
    assert message.routing_key == "orders.OrderCancelled"
    assert message.message_id == str(envelope.id)


async def test_a_refused_cancel_emits_nothing(
    client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice, mallory = new_customer(), new_customer()
    order = await place(client, alice)
    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        assert (await client.post(f"/orders/{order['id']}/cancel", headers=alice.auth)).status_code == 200
        await catcher.wait_for(of_order(order["id"]))
        assert (await client.post(f"/orders/{order['id']}/cancel", headers=alice.auth)).status_code == 409
        assert (await client.post(f"/orders/{order['id']}/cancel", headers=mallory.auth)).status_code == 404
        await catcher.settle(1.5)  # longer than the relay's poll interval
    assert len(catcher.matching(of_order(order["id"]))) == 1  # this test's order only: not another test's, late
