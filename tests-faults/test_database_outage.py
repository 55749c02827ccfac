"""Scenario 2: orders and notifications lose their databases (each cut through a proxy of its own).

Promise: while cut, requests answer 503 problem details (never 500), readiness is `down`, liveness
is fine; events published to notifications meanwhile are retried, not lost; orders the relay could
not publish wait in the outbox. On restore, without a restart, writes answer 201 again and every
order and user ends with exactly one notification sent.

The clients retry as a client should: each order has its Idempotency-Key, sent again after a 503
until it is answered 201. A 503 whose COMMIT did reach the database (the cut fell on the reply)
is then answered with the order it placed, so every key ends with exactly one order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx

from fastmicro.db import create_session_factory
from fastmicro.errors import PROBLEM_CONTENT_TYPE
from fastmicro.security import Principal
from fastmicro.testing.plugin import ProxyFactory
from fault_stack import ONE_ITEM, FaultStack, eventually, wait_ready
from figures import Figure, Record
from orders.schemas import OrderCreate, OrderItemIn
from orders.service import OrderService
from orders.uow import OrdersUnitOfWork
from scenarios import consumed, count_by_status, mails_to, new_user, per_event, publish_all

BUYERS = 4
WRITERS = 4
#: Orders answered 201 before the cut, and requests answered during it, by the writers below.
BEFORE_CUT = 20
DURING_CUT = 20
#: Users created while notifications' database is cut; orders another replica writes meanwhile.
USERS_DURING_CUT = 10
WRITTEN_ELSEWHERE = 5


@dataclass
class Answer:
    status: int
    content_type: str
    code: str | None
    during_cut: bool


@dataclass
class Keyed:
    """One order a client wants placed: its Idempotency-Key, sent until answered 201."""

    headers: dict[str, str]
    statuses: list[int] = field(default_factory=list)
    order_id: str | None = None
    replayed: bool = False

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        response = await client.post("/orders", json={"items": ONE_ITEM}, headers=self.headers)
        self.statuses.append(response.status_code)
        if response.status_code == 201:
            self.order_id = response.json()["id"]
            self.replayed = response.headers.get("idempotent-replayed") == "true"
        return response


def keyed(stack: FaultStack, user_id: uuid.UUID) -> Keyed:
    return Keyed({**stack.bearer(user_id), "Idempotency-Key": f"order-{uuid.uuid4()}"})


@dataclass
class Writers:
    """Clients placing orders in a loop, as traffic does, until told to stop; each retries its key after a 503."""

    client: httpx.AsyncClient
    stack: FaultStack
    buyers: list[uuid.UUID]
    answers: list[Answer] = field(default_factory=list)
    keys: list[Keyed] = field(default_factory=list)
    cut: bool = False

    def count(self, status: int, *, during_cut: bool) -> int:
        return sum(1 for a in self.answers if a.status == status and a.during_cut == during_cut)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def write(n: int) -> None:
            user_id = self.buyers[n % len(self.buyers)]
            order = keyed(self.stack, user_id)
            self.keys.append(order)
            while not stop.is_set():
                during_cut = self.cut  # as the request leaves: one in flight at the cut counts as before it
                response = await order.send(self.client)
                self.answers.append(answer(response, during_cut=during_cut))
                if response.status_code == 201:
                    order = keyed(self.stack, user_id)
                    self.keys.append(order)
                else:
                    await asyncio.sleep(0.02)  # a client's pause before trying again, not a synchronisation

        tasks = [asyncio.create_task(write(n)) for n in range(WRITERS)]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)


def answer(response: httpx.Response, *, during_cut: bool) -> Answer:
    content_type = response.headers.get("content-type", "")
    code = response.json().get("code") if content_type == PROBLEM_CONTENT_TYPE else None
    return Answer(response.status_code, content_type, code, during_cut)


async def place_elsewhere(stack: FaultStack, user_id: uuid.UUID) -> None:
    """An order placed by another orders replica, whose own link to the database is fine."""
    uow = OrdersUnitOfWork(create_session_factory(stack.engine("orders")))
    now = datetime.now(UTC)
    actor = Principal(user_id=user_id, token_id="replica", issued_at=now, expires_at=now + timedelta(minutes=5))
    await OrderService(uow).place(actor, OrderCreate(items=[OrderItemIn.model_validate(item) for item in ONE_ITEM]))


async def unpublished(stack: FaultStack) -> int:
    return int(await stack.scalar("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL"))


async def test_a_database_cut_answers_503_loses_nothing_and_recovers_without_a_restart(
    stack: FaultStack, tcp_proxy: ProxyFactory, record: Record
) -> None:
    """503 problems and ready=down while cut; after restore 201 again and one sent notification per event."""
    orders_url, notifications_url = stack.databases["orders"], stack.databases["notifications"]
    orders_db, notifications_db = await tcp_proxy(orders_url), await tcp_proxy(notifications_url)
    buyers = [new_user() for _ in range(BUYERS)]
    late_users = [new_user() for _ in range(USERS_DURING_CUT)]
    retried_before = consumed("UserCreated", "retried")
    duplicates_before = consumed("UserCreated", "duplicate") + consumed("OrderPlaced", "duplicate")
    async with (
        stack.app("notifications", database_url=notifications_db.url_for(notifications_url)) as notifications,
        stack.app("orders", database_url=orders_db.url_for(orders_url)) as orders,
    ):
        await publish_all(stack, buyers)
        await wait_ready(orders, "ok")
        await wait_ready(notifications, "ok")
        await eventually(lambda: welcomed(stack, BUYERS), what="the buyers' welcome notifications")
        writers = Writers(orders, stack, [buyer.user_id for buyer in buyers])

        async with writers.running():
            await eventually(lambda: answered(writers, 201, BEFORE_CUT), what=f"{BEFORE_CUT} orders placed")
            await asyncio.gather(orders_db.cut(), notifications_db.cut())
            writers.cut = True
            held_at_cut = await unpublished(stack)  # committed, not yet relayed when the link went
            await eventually(lambda: answered(writers, 503, DURING_CUT, during_cut=True), what="503s during the cut")

        # While cut: every kind of request fails cleanly, and the process says why.
        bearer = stack.bearer(buyers[0].user_id)
        while_cut = keyed(stack, buyers[0].user_id)
        writers.keys.append(while_cut)
        cut_answers = {
            "POST /orders": await while_cut.send(orders),
            "GET /orders": await orders.get("/orders", headers=bearer),
            "GET /notifications": await notifications.get("/notifications", headers=bearer),
        }
        ready = {"orders": await orders.get("/health/ready"), "notifications": await notifications.get("/health/ready")}
        live = {"orders": await orders.get("/health/live"), "notifications": await notifications.get("/health/live")}

        # Users arrive at notifications meanwhile; another replica of orders writes orders its relay cannot see.
        await publish_all(stack, late_users)
        for n in range(WRITTEN_ELSEWHERE):
            await place_elsewhere(stack, buyers[n % BUYERS].user_id)
        held_during_cut = await unpublished(stack)

        # More retries than the attempt budget allows all of them: had the outage used up attempts,
        # at least one message would now be dead-lettered.
        budget = len(stack.settings("notifications").consumer_retry_delays)

        async def retried_past_budget() -> bool:
            return consumed("UserCreated", "retried") - retried_before > budget * USERS_DURING_CUT

        await eventually(retried_past_budget, within=15, what="the users' events retried while the database is cut")
        dead_during_cut = await stack.dead_letters("notifications")

        await asyncio.gather(orders_db.restore(), notifications_db.restore())
        restored = time.monotonic()
        first = keyed(stack, buyers[0].user_id)
        writers.keys.append(first)

        async def placed(order: Keyed) -> bool:
            return (await order.send(orders)).status_code == 201

        first_201 = await eventually(lambda: placed(first), within=20, every=0.1, what="a 201 after restore")
        # Every key the writers left unanswered (503) is sent again, as its client would.
        unanswered = [order for order in writers.keys if order.order_id is None]
        for order in unanswered:
            await eventually(partial(placed, order), within=20, every=0.1, what="a retried key answered")
        expected_orders = 0

        async def caught_up() -> bool:
            nonlocal expected_orders
            expected_orders = int(await stack.scalar("orders", "SELECT count(*) FROM orders"))
            return (
                await unpublished(stack) == 0
                and (await count_by_status(stack, "order_placed")).get("sent", 0) == expected_orders
                and (await count_by_status(stack, "welcome")).get("sent", 0) == BUYERS + USERS_DURING_CUT
            )

        await eventually(caught_up, within=30, what="every order and user notified")
        caught_up_in = time.monotonic() - restored
        await wait_ready(orders, "ok")
        await wait_ready(notifications, "ok")

    # While cut: 503 problem details with a code, never a 500; ready says down, live says alive.
    statuses = Counter(a.status for a in writers.answers)
    during = Counter(a.status for a in writers.answers if a.during_cut)
    assert set(statuses) <= {201, 503}, f"writers got {statuses}"
    assert set(during) == {503}, f"during the cut writers got {during}"
    for a in writers.answers:
        if a.status == 503:
            assert (a.content_type, a.code) == (PROBLEM_CONTENT_TYPE, "service_unavailable"), a
    for name, response in cut_answers.items():
        assert response.status_code == 503, (name, response.status_code, response.text)
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE, name
        assert response.json()["code"] == "service_unavailable", name
    for service, response in ready.items():
        assert (response.status_code, response.json()["status"]) == (503, "down"), service
        assert response.json()["checks"]["database"] == "down", service
    assert all(response.status_code == 200 for response in live.values())
    assert dead_during_cut == 0  # our own outage is not the messages' fault: they were kept
    assert held_during_cut >= WRITTEN_ELSEWHERE  # the relay could not reach them
    assert set(first.statuses) <= {201, 503}

    # Every key was answered with one order of its own, and no other order exists: no 503 placed twice.
    answered_ids = [order.order_id for order in writers.keys]
    assert None not in answered_ids
    assert len(set(answered_ids)) == len(writers.keys)
    committed_ids = {str(row_id) for (row_id,) in await stack.rows("orders", "SELECT id FROM orders")}
    assert expected_orders == len(writers.keys) + WRITTEN_ELSEWHERE, "an order placed twice"
    assert set(answered_ids) <= committed_ids
    retried = [order for order in writers.keys if 503 in order.statuses]
    replayed = sum(order.replayed for order in retried)

    # After restore: every order ever committed (whatever its answer said) and every user notified once.
    orders_by_event = await per_event(stack, "order_placed")
    outbox_rows = int(await stack.scalar("orders", "SELECT count(*) FROM outbox"))
    assert len(orders_by_event) == expected_orders == outbox_rows
    assert all(count == 1 for count in orders_by_event.values())
    assert await count_by_status(stack, "order_placed") == {"sent": expected_orders}
    welcomes = await per_event(stack, "welcome")
    assert len(welcomes) == BUYERS + USERS_DURING_CUT
    assert all(count == 1 for count in welcomes.values())
    assert await count_by_status(stack, "welcome") == {"sent": BUYERS + USERS_DURING_CUT}
    assert await stack.dead_letters("notifications") == 0
    # Every notification's mail arrived. A mail whose `sent` mark was lost with the database goes
    # again (at least once, as the sender promises), under the same Message-ID: at most the one
    # mail in flight per sender per lost connection, never a batch. Here one sender, one cut.
    mails = Counter(m["Message-ID"] for m in mails_to(stack, (user.email for user in [*buyers, *late_users])))
    notification_ids = await stack.rows("notifications", "SELECT id FROM notifications")
    assert set(mails) == {f"<{row_id}@notifications.fastmicro>" for (row_id,) in notification_ids}
    resent = sum(mails.values()) - len(mails)
    assert resent <= 1, f"{resent} mails re-sent after one cut"

    sent_events = expected_orders + USERS_DURING_CUT
    record(
        Figure(
            "2 database cut (orders + notifications)",
            sent=sent_events,
            delivered=len(orders_by_event) + USERS_DURING_CUT,
            duplicates=int(consumed("UserCreated", "duplicate") + consumed("OrderPlaced", "duplicate"))
            - int(duplicates_before),
            lost=sent_events - len(orders_by_event) - USERS_DURING_CUT,
            recovery_seconds=caught_up_in,
            note=(
                f"during cut: writers {dict(during)}, reads 503; first 201 {first_201:.2f}s after restore "
                f"(after {len(first.statuses) - 1} 503s); relay held {held_at_cut} at cut + {WRITTEN_ELSEWHERE} "
                f"written elsewhere; {len(writers.keys)} Idempotency-Keys, {len(retried)} retried after a 503 "
                f"({replayed} of them committed before their 503: replayed), {expected_orders} orders committed, "
                f"0 placed twice; {resent} mails re-sent (same Message-ID)"
            ),
        )
    )


async def welcomed(stack: FaultStack, users: int) -> bool:
    return (await count_by_status(stack, "welcome")).get("sent", 0) >= users


async def answered(writers: Writers, status: int, at_least: int, *, during_cut: bool = False) -> bool:
    return writers.count(status, during_cut=during_cut) >= at_least
