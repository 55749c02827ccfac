"""Scenario 6: two replicas of orders (two relays) and two of notifications (two consumers) over one burst.

Promise: replicas share the work without stepping on each other. The relays split the outbox
with `FOR UPDATE SKIP LOCKED`, so no row is published by both; the consumers compete on one
queue, so each message goes to one of them. Every order has one notification and one email.

The orders are written in this process through the orders use case, with no relay here: the
two worker relays are the only ones publishing. The consumers' prefetch is small, so one of
them cannot take the whole burst.
"""

from __future__ import annotations

import time
import uuid

from fastmicro.testing.plugin import ProcessFactory
from fault_stack import FaultStack, eventually
from figures import Figure, Record
from scenarios import mails_to, sent
from workers import (
    duplicates,
    emails_of,
    handled,
    message_id_counts,
    notifications_per_event,
    place_orders,
    publish_users,
    queue_depth,
    start_worker,
)

ORDERS = 200
USERS = 10
PREFETCH = 4


async def test_two_relays_and_two_consumers_share_a_burst_and_each_event_has_its_effect_once(
    stack: FaultStack, service_process: ProcessFactory, record: Record
) -> None:
    """Both consumers handle part of the burst; no event is lost, published twice or handled twice."""
    consumers = [
        await start_worker(service_process, stack, "notifications", f"notifications-{n}", consumer_prefetch=PREFETCH)
        for n in (1, 2)
    ]
    relays = [await start_worker(service_process, stack, "orders", f"orders-{n}") for n in (1, 2)]
    users = await publish_users(stack, USERS)

    async def welcomed() -> bool:
        return len(await notifications_per_event(stack, "welcome")) == USERS

    await eventually(welcomed, within=20, what="the users' welcome notifications")

    started = time.monotonic()
    await place_orders(stack, [uuid.UUID(str(user.data["user_id"])) for user in users], ORDERS)
    written = time.monotonic() - started

    async def all_handled() -> bool:
        return len(await notifications_per_event(stack, "order_placed")) == ORDERS

    drained = await eventually(all_handled, within=30, what="every order's notification")
    await eventually(lambda: sent_all(stack), within=30, what="every order email sent")
    exit_codes = [await worker.terminate() for worker in (*relays, *consumers)]  # logs complete

    split = [handled(consumer, "OrderPlaced") for consumer in consumers]
    published = [sum(line["published"] for line in relay.matching("outbox_batch_published")) for relay in relays]
    absorbed = sum(len(duplicates(consumer, "OrderPlaced")) for consumer in consumers)
    per_event = await notifications_per_event(stack, "order_placed")
    mails = message_id_counts(mails_to(stack, emails_of(users), "is placed"))
    outbox = await stack.rows(
        "orders",
        "SELECT count(*) FILTER (WHERE published_at IS NULL), count(DISTINCT xmin::text), max(attempts) FROM outbox",
    )
    unpublished, relay_transactions, max_attempts = outbox[0]

    assert exit_codes == [0, 0, 0, 0]
    assert all(len(ids) > 0 for ids in split), [len(ids) for ids in split]  # both consumers took part
    assert not set(split[0]) & set(split[1])  # no event handled by both
    assert len(split[0]) + len(split[1]) == ORDERS
    assert absorbed == 0  # no row was published twice: nothing for the inbox to absorb
    assert sum(published) == ORDERS  # the relays together published each row once
    assert await stack.scalar("orders", "SELECT count(*) FROM orders") == ORDERS
    assert unpublished == 0
    assert max_attempts == 1  # each row marked once
    assert len(per_event) == ORDERS
    assert set(per_event.values()) == {1}
    assert len(mails) == ORDERS
    assert set(mails.values()) == {1}
    assert await queue_depth(stack, "notifications") == 0
    assert await stack.dead_letters("notifications") == 0
    record(
        Figure(
            "6 two relays + two consumers over a burst",
            sent=ORDERS,
            delivered=len(per_event),
            duplicates=absorbed,
            lost=ORDERS - len(per_event),
            note=(
                f"consumers split {len(split[0])}/{len(split[1])} (prefetch {PREFETCH}); "
                f"relays split {published[0]}/{published[1]} over {relay_transactions} claim transactions; "
                f"{ORDERS} written in {written:.2f}s, the last handled {drained:.2f}s after the last write"
            ),
        )
    )


async def sent_all(stack: FaultStack) -> bool:
    return await sent(stack, "order_placed") == ORDERS
