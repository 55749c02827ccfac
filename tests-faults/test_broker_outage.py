"""Scenario 1: the broker goes away in the middle of a burst of writes.

Promise: writes keep succeeding (their events wait in the outbox), readiness says `degraded`,
and once the broker is back every event is delivered and every notification exists once.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx

from fastmicro.testing.plugin import ProxyFactory
from fault_stack import ONE_ITEM, FaultStack, eventually, wait_ready
from figures import Figure, Record
from scenarios import consumed, mails_to, sent

ORDERS = 200
USERS = 4
CONCURRENCY = 20


async def test_a_broker_cut_during_a_burst_loses_nothing_and_duplicates_nothing(
    stack: FaultStack, tcp_proxy: ProxyFactory, record: Record
) -> None:
    broker = await tcp_proxy(stack.amqp_url)
    users = [await stack.user_created() for _ in range(USERS)]
    async with (
        stack.app("notifications"),
        stack.app("orders", amqp_url=broker.url_for(stack.amqp_url)) as orders,
    ):
        await wait_ready(orders, "ok")
        await eventually(lambda: all_sent(stack, "welcome", len(users)), what="the users' welcome notifications")
        duplicates_before = consumed("OrderPlaced", "duplicate")

        await broker.cut()
        statuses = await place_orders(orders, stack, [user_id for user_id, _ in users])
        ready_while_cut = await wait_ready(orders, "degraded")
        pending_while_cut = await stack.scalar("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL")

        await broker.restore()
        recovery = await eventually(
            lambda: all_sent(stack, "order_placed", ORDERS), within=120, what="every order's notification sent"
        )
        await wait_ready(orders, "ok")

    assert statuses == {201: ORDERS}
    assert ready_while_cut["checks"] == {"database": "ok", "broker": "down"}
    assert pending_while_cut == ORDERS  # every event waited in the outbox, none was dropped
    placed = await stack.scalar("orders", "SELECT count(*) FROM orders")
    per_event = await stack.rows(
        "notifications", "SELECT event_id, count(*) FROM notifications WHERE kind = 'order_placed' GROUP BY event_id"
    )
    order_mails = mails_to(stack, [address for _, address in users], "is placed")
    unpublished = await stack.scalar("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL")

    assert placed == ORDERS
    assert len(per_event) == ORDERS
    assert all(count == 1 for _, count in per_event)
    assert len(order_mails) == ORDERS
    assert len({m["Message-ID"] for m in order_mails}) == ORDERS
    assert unpublished == 0
    assert await stack.dead_letters("notifications") == 0
    record(
        Figure(
            "1 broker cut during a burst",
            sent=ORDERS,
            delivered=len(per_event),
            duplicates=int(consumed("OrderPlaced", "duplicate") - duplicates_before),
            lost=ORDERS - len(per_event),
            recovery_seconds=recovery,
            note=f"{statuses.get(201, 0)}/{ORDERS} writes answered 201 while cut; ready=degraded",
        )
    )


async def place_orders(client: httpx.AsyncClient, stack: FaultStack, user_ids: list[uuid.UUID]) -> dict[int, int]:
    """Place ORDERS orders spread over the users, CONCURRENCY at a time; count the status codes."""
    gate = asyncio.Semaphore(CONCURRENCY)
    statuses: dict[int, int] = {}

    async def place(user_id: uuid.UUID) -> None:
        async with gate:
            response = await client.post("/orders", json={"items": ONE_ITEM}, headers=stack.bearer(user_id))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    await asyncio.gather(*(place(user_ids[n % len(user_ids)]) for n in range(ORDERS)))
    return statuses


async def all_sent(stack: FaultStack, kind: str, expected: int) -> bool:
    return await sent(stack, kind) >= expected
