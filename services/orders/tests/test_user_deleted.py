"""UserDeleted, as it arrives from the bus: the user's placed orders are cancelled and they place no more."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from fastmicro.consumer import REASON_HEADER
from fastmicro.events import Envelope
from fastmicro.messaging import Broker
from fastmicro.outbox import outbox_table
from fastmicro.testing import EventDelivery, catch_events, publish_envelope, publish_event, publish_raw
from fastmicro.testing.locks import wait_for_an_advisory_lock_waiter
from fastmicro_contracts.users import UserDeleted
from orders.handlers import SUBSCRIPTIONS, on_user_deleted
from orders.models import DeletedUser, Order
from orders.schemas import OrderItemIn
from orders.settings import OrdersSettings
from orders.uow import OrdersUnitOfWork

from .conftest import Customer, NewCustomer
from .helpers import TWO_ITEMS, assert_order, assert_problem, of_order, of_user, place


def cancelled_for_deletion(user: Customer) -> Callable[[Envelope], bool]:
    return lambda envelope: of_user(user.id)(envelope) and envelope.data.get("reason") == "user_deleted"


async def status_of(client: httpx.AsyncClient, user: Customer, order_id: str) -> str:
    status: str = assert_order(await client.get(f"/orders/{order_id}", headers=user.auth))["status"]
    return status


async def test_user_deleted_cancels_that_users_placed_orders(
    client: httpx.AsyncClient, unaware_client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice, bob = new_customer(), new_customer()
    placed = [(await place(client, alice))["id"] for _ in range(3)]
    already = await place(client, alice)
    already = assert_order(await client.post(f"/orders/{already['id']}/cancel", headers=alice.auth))
    bobs = await place(client, bob)
    correlation_id = f"req-{uuid.uuid4().hex}"

    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        cause = await publish_event(test_broker, UserDeleted(user_id=alice.id), correlation_id=correlation_id)
        await catcher.wait_for(cancelled_for_deletion(alice), count=3, within=15)
        await catcher.settle(1)

    events = catcher.matching(cancelled_for_deletion(alice))
    assert sorted(envelope.data["order_id"] for envelope, _ in events) == sorted(placed)
    for envelope, message in events:
        assert envelope.type == "OrderCancelled"
        assert envelope.source == "orders"
        assert set(envelope.data) == {"order_id", "user_id", "reason"}
        assert envelope.causation_id == cause.id
        assert envelope.correlation_id == correlation_id
        assert message.routing_key == "orders.OrderCancelled"
    assert catcher.matching(of_user(bob.id)) == []

    for order_id in placed:
        assert await status_of(unaware_client, alice, order_id) == "cancelled"
    assert (await unaware_client.get(f"/orders/{already['id']}", headers=alice.auth)).json() == already  # untouched
    assert (await client.get(f"/orders/{bobs['id']}", headers=bob.auth)).json() == bobs


async def test_a_deleted_user_can_no_longer_place_orders(
    client: httpx.AsyncClient, unaware_client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice, bob = new_customer(), new_customer()
    await place(client, alice)  # the control: alice could place orders before
    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        await publish_event(test_broker, UserDeleted(user_id=alice.id))
        await catcher.wait_for(cancelled_for_deletion(alice), within=15)

    async with catch_events(test_broker, "orders.OrderPlaced") as placed:
        response = await unaware_client.post("/orders", json={"items": TWO_ITEMS}, headers=alice.auth)
        body = assert_problem(response, 403, "forbidden")
        assert "deleted" in body["detail"]
        await place(client, bob)  # others still can
        await placed.wait_for(of_user(bob.id))
        await placed.settle(0.5)
    assert placed.matching(of_user(alice.id)) == []
    assert (await unaware_client.get("/orders", headers=alice.auth)).json()["total"] == 1  # reads still answer


async def test_user_deleted_for_a_user_without_orders_still_forbids_placing(
    app: FastAPI,
    client: httpx.AsyncClient,
    unaware_client: httpx.AsyncClient,
    new_customer: NewCustomer,
    test_broker: Broker,
) -> None:
    alice = new_customer()
    await publish_event(test_broker, UserDeleted(user_id=alice.id))
    async with asyncio.timeout(15):  # no event tells when it was handled: its row does
        while not await is_recorded_deleted(app, alice):
            await asyncio.sleep(0.05)
    assert_problem(
        await unaware_client.post("/orders", json={"items": TWO_ITEMS}, headers=alice.auth), 403, "forbidden"
    )


async def is_recorded_deleted(app: FastAPI, user: Customer) -> bool:
    async with app.state.runtime.engine.connect() as conn:
        query = select(DeletedUser.user_id).where(DeletedUser.user_id == user.id)
        return await conn.scalar(query) is not None


async def test_the_same_user_deleted_delivered_twice_has_one_effect(
    app: FastAPI, client: httpx.AsyncClient, unaware_client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    """Through the consumer's own code path (inbox, one transaction), without the broker."""
    alice, sentinel = new_customer(), new_customer()
    placed = [(await place(client, alice))["id"] for _ in range(2)]
    kept = await place(client, sentinel)
    delivery = EventDelivery(SUBSCRIPTIONS, lambda: OrdersUnitOfWork(app.state.runtime.session_factory))

    first = await delivery.deliver(UserDeleted(user_id=alice.id))
    assert first.kind == "handled"
    assert first.envelope is not None
    # An order the first delivery could not have seen: if the second ran the handler, it would cancel it.
    async with OrdersUnitOfWork(app.state.runtime.session_factory) as uow:
        late = Order.place(user_id=alice.id, lines=[OrderItemIn(sku="LATE", quantity=1, unit_price=1)], currency="USD")
        await uow.orders.create(late)
        await uow.commit()
    again = await delivery.deliver(first.envelope)

    assert again.kind == "duplicate"
    assert sorted(await cancellations_caused_by(app, first.envelope.id)) == sorted(placed)
    for order_id in placed:
        assert await status_of(unaware_client, alice, order_id) == "cancelled"
    assert await status_of(unaware_client, alice, str(late.id)) == "placed"
    assert await status_of(client, sentinel, kept["id"]) == "placed"


async def cancellations_caused_by(app: FastAPI, cause: uuid.UUID) -> list[str]:
    """The order ids of the OrderCancelled events the handling of `cause` wrote to the outbox."""
    async with app.state.runtime.engine.connect() as conn:
        payloads = (await conn.scalars(select(outbox_table.c.payload))).all()
    return [
        p["data"]["order_id"] for p in payloads if p["causation_id"] == str(cause) and p["type"] == "OrderCancelled"
    ]


async def test_an_order_placed_while_the_deletion_is_handled_waits_for_it_and_is_refused(
    app: FastAPI, client: httpx.AsyncClient, unaware_client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    """The deletion holds the user's lock: placing waits, then sees the deletion that committed meanwhile."""
    alice = new_customer()
    async with OrdersUnitOfWork(app.state.runtime.session_factory) as uow:
        await on_user_deleted(UserDeleted(user_id=alice.id), uow)
        placing = asyncio.create_task(unaware_client.post("/orders", json={"items": TWO_ITEMS}, headers=alice.auth))
        await wait_for_an_advisory_lock_waiter(app.state.runtime.engine)
        assert not placing.done()
        await uow.commit()
    assert_problem(await placing, 403, "forbidden")
    assert (await unaware_client.get("/orders", headers=alice.auth)).json()["total"] == 0


async def test_a_deletion_arriving_while_an_order_is_placed_waits_for_it_and_cancels_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    unaware_client: httpx.AsyncClient,
    new_customer: NewCustomer,
    test_broker: Broker,
) -> None:
    """Placing holds the user's lock (shared) to commit: the deletion waits, then sees the order and cancels it."""
    alice = new_customer()
    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        # The steps of OrderService.place, with the commit held back until the deletion is waiting.
        async with OrdersUnitOfWork(app.state.runtime.session_factory) as uow:
            assert not await uow.deleted_users.lock_for_placing(alice.id)
            order = Order.place(
                user_id=alice.id, lines=[OrderItemIn(sku="A", quantity=1, unit_price=5)], currency="USD"
            )
            await uow.orders.create(order)
            await publish_event(test_broker, UserDeleted(user_id=alice.id))
            await wait_for_an_advisory_lock_waiter(app.state.runtime.engine)
            await uow.commit()
        await catcher.wait_for(of_order(order.id), within=15)
    assert await status_of(unaware_client, alice, str(order.id)) == "cancelled"


async def test_a_user_deleted_with_fields_it_does_not_know_is_handled(
    client: httpx.AsyncClient, unaware_client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker
) -> None:
    alice = new_customer()
    order = await place(client, alice)
    envelope = Envelope.wrap(UserDeleted(user_id=alice.id))
    newer = envelope.model_copy(update={"data": {**envelope.data, "erased_by": "gdpr-request", "at": 1}})
    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        await publish_envelope(test_broker, newer)
        await catcher.wait_for(of_order(order["id"]), within=15)
    assert await status_of(unaware_client, alice, order["id"]) == "cancelled"


async def test_an_unparseable_user_deleted_is_dead_lettered_and_the_next_one_handled(
    client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker, amqp_namespace: str
) -> None:
    alice = new_customer()
    order = await place(client, alice)
    poison_id = uuid.uuid4().hex
    await publish_raw(
        test_broker, "users.UserDeleted", b'{"type": "UserDeleted", "data": {"user_id": 7}', message_id=poison_id
    )
    await publish_raw(
        test_broker,
        "users.UserDeleted",
        Envelope.wrap(UserDeleted(user_id=alice.id))
        .model_copy(update={"data": {"user_id": "nobody"}})
        .model_dump_json()
        .encode(),
        message_id=poison_id,
    )
    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        await publish_event(test_broker, UserDeleted(user_id=alice.id))
        await catcher.wait_for(of_order(order["id"]), within=15)

    channel = await test_broker.channel(publisher_confirms=False)
    try:
        dead = await channel.declare_queue(f"{amqp_namespace}orders.events.dead", passive=True)
        reasons: list[str] = []
        async with asyncio.timeout(10):
            while len(reasons) < 2:
                message = await dead.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                await message.ack()
                if message.message_id == poison_id:
                    reasons.append(str(message.headers[REASON_HEADER]))
    finally:
        await channel.close()
    assert sorted(reason.split(":")[0] for reason in reasons) == ["invalid UserDeleted v1 data", "unparseable envelope"]


async def test_a_deleted_users_token_gets_401_on_every_endpoint(
    client: httpx.AsyncClient, new_customer: NewCustomer, test_broker: Broker, orders_settings: OrdersSettings
) -> None:
    """Once UserDeleted is handled, within one revocation reload; other users are not affected."""
    alice, bob = new_customer(), new_customer()
    order = await place(client, alice)
    bobs = await place(client, bob)

    async with catch_events(test_broker, "orders.OrderCancelled") as catcher:
        await publish_event(test_broker, UserDeleted(user_id=alice.id))
        await catcher.wait_for(cancelled_for_deletion(alice), count=1, within=15)  # handled and committed
    # The API reloads its revocations every REVOCATION_POLL_SECONDS: one reload past the commit at most.
    async with asyncio.timeout(orders_settings.revocation_poll_seconds * 2 + 5):
        while (await client.get("/orders", headers=alice.auth)).status_code != 401:
            await asyncio.sleep(orders_settings.revocation_poll_seconds / 4)

    for method, path in [
        ("GET", "/orders"),
        ("GET", f"/orders/{order['id']}"),
        ("POST", "/orders"),
        ("POST", f"/orders/{order['id']}/cancel"),
    ]:
        body = {"items": TWO_ITEMS} if path == "/orders" and method == "POST" else None
        assert_problem(await client.request(method, path, json=body, headers=alice.auth), 401, "invalid_token")
    assert assert_order(await client.get(f"/orders/{bobs['id']}", headers=bob.auth))["id"] == bobs["id"]
