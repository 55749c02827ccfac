"""Scenario 9: an order's event reaches notifications before the UserCreated of its user.

Promise: the early OrderPlaced is retried (not dropped, not dead-lettered) until the contact
arrives, then its notification is written and sent exactly once; the welcome too.
"""

from __future__ import annotations

from fault_stack import FaultStack, eventually
from figures import Figure, Record
from scenarios import (
    consumed,
    count_by_status,
    delete_queues,
    mails_to,
    new_user,
    order_placed,
    per_event,
    publish_all,
    sent,
)

USERS = 20
#: Seven attempts over ~23 s: the users arrive within the first few; the last delay leaves room for a busy machine.
RETRY_DELAYS = [0.2, 0.5, 1.0, 2.0, 4.0, 15.0]


async def test_orders_ahead_of_their_users_are_notified_once_the_users_arrive(
    stack: FaultStack, record: Record
) -> None:
    """Each early OrderPlaced fails at least once, then yields one sent order_placed notification; none dead."""
    users = [new_user() for _ in range(USERS)]
    orders = [order_placed(user.user_id) for user in users]
    retried_before = consumed("OrderPlaced", "retried")
    duplicates_before = consumed("OrderPlaced", "duplicate") + consumed("UserCreated", "duplicate")
    own_delays = set(stack.settings("notifications").consumer_retry_delays)
    extra_queues = [
        f"{stack.namespace}notifications.events.retry.{int(d * 1000)}ms" for d in RETRY_DELAYS if d not in own_delays
    ]
    try:
        async with stack.app("notifications", consumer_retry_delays=RETRY_DELAYS):
            order_envelopes = await publish_all(stack, orders)

            async def each_retried() -> bool:
                return consumed("OrderPlaced", "retried") - retried_before >= USERS

            await eventually(each_retried, within=10, every=0.02, what="the early orders retried")
            early = await count_by_status(stack, "order_placed")  # nothing can be written without a contact
            await publish_all(stack, users)

            async def all_sent() -> bool:
                return await sent(stack, "order_placed") == USERS and await sent(stack, "welcome") == USERS

            # Each order is retried within one delay of its user's arrival, at the longest.
            within = max(RETRY_DELAYS) + 10
            recovery = await eventually(all_sent, within=within, what="every order and welcome notification sent")
        retried = int(consumed("OrderPlaced", "retried") - retried_before)
        dead = await stack.dead_letters("notifications")
    finally:
        await delete_queues(stack, extra_queues)  # the stack deletes the queues of its own delays only

    assert early == {}
    assert dead == 0
    by_order = await per_event(stack, "order_placed")
    assert set(by_order) == {envelope.id for envelope in order_envelopes}
    assert all(count == 1 for count in by_order.values())
    assert await count_by_status(stack, "order_placed") == {"sent": USERS}
    assert await count_by_status(stack, "welcome") == {"sent": USERS}
    recipients = await stack.rows(
        "notifications", "SELECT user_id, recipient FROM notifications WHERE kind = 'order_placed'"
    )
    assert dict(recipients) == {user.user_id: user.email for user in users}
    mails = mails_to(stack, (user.email for user in users))
    assert len(mails) == 2 * USERS  # a welcome and an order confirmation each, nothing twice
    assert len({m["Message-ID"] for m in mails}) == 2 * USERS
    assert sum("order" in str(m["Subject"]).lower() for m in mails) == USERS
    record(
        Figure(
            "9 orders ahead of their users",
            sent=USERS,
            delivered=len(by_order),
            duplicates=int(consumed("OrderPlaced", "duplicate") + consumed("UserCreated", "duplicate"))
            - int(duplicates_before),
            lost=USERS - len(by_order),
            recovery_seconds=recovery,
            note=f"{USERS} OrderPlaced before UserCreated, {retried} retries, 0 dead; seconds from UserCreated",
        )
    )
