"""Scenario 3: the outbox relay is SIGKILLed after publishing a batch and before marking it sent.

Promise: the mark belongs to the claim's transaction, so it dies with the process and every row
stays unpublished; the next relay publishes the batch again, and the consumers' inbox absorbs
each duplicate: every event has its effect once (one notification, one email).

How the window is held open, deterministically: the test takes `LOCK TABLE outbox IN SHARE MODE`.
SHARE does not conflict with the relay's claim (`FOR UPDATE SKIP LOCKED`, ROW SHARE), so the relay
claims and publishes; it does conflict with its mark (`UPDATE`, ROW EXCLUSIVE), which waits on the
lock, between publish and commit, until the relay is killed there.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import text

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
    start_worker,
)

ORDERS = 40  # one relay batch (OUTBOX_BATCH_SIZE is 200)
USERS = 4

UNPUBLISHED = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
MARK_WAITING = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE outbox%'"
)


async def test_a_relay_killed_between_publish_and_mark_publishes_again_and_the_inbox_absorbs_it(
    stack: FaultStack, service_process: ProcessFactory, record: Record
) -> None:
    """Every row is re-published after the kill; each duplicate is skipped by the inbox; effects once."""
    notifications = await start_worker(service_process, stack, "notifications", "notifications-1")
    users = await publish_users(stack, USERS)
    await notifications.wait_for("event_handled", count=USERS, event_type="UserCreated")
    await place_orders(stack, [uuid.UUID(str(user.data["user_id"])) for user in users], ORDERS)
    assert await stack.scalar("orders", UNPUBLISHED) == ORDERS  # no relay runs yet

    async with stack.engine("orders").connect() as blocker:
        lock = await blocker.begin()
        await blocker.execute(text("LOCK TABLE outbox IN SHARE MODE"))
        # No statement timeout: the mark waits on the lock for as long as the test holds it.
        relay = await start_worker(service_process, stack, "orders", "orders-1", db_statement_timeout_ms=0)
        await notifications.wait_for("event_handled", count=ORDERS, event_type="OrderPlaced")
        waiting: list[int] = []

        async def mark_blocked() -> bool:
            waiting[:] = [pid for (pid,) in await stack.rows("orders", MARK_WAITING)]
            return len(waiting) == 1

        await eventually(mark_blocked, within=10, what="the relay's mark waiting on the lock")
        killed = await relay.kill()
        await lock.rollback()

    async def orphan_gone() -> bool:
        return not await stack.rows("orders", "SELECT 1 FROM pg_stat_activity WHERE pid = :pid", pid=waiting[0])

    # The killed relay's backend runs its UPDATE once the lock is gone, then finds its client dead and aborts.
    await eventually(orphan_gone, within=10, what="the killed relay's backend to end")
    unmarked_after_kill = await stack.scalar("orders", UNPUBLISHED)
    first_published = len(handled(notifications, "OrderPlaced"))

    restarted = time.monotonic()
    await start_worker(service_process, stack, "orders", "orders-2")

    async def absorbed() -> bool:
        return (
            len(duplicates(notifications, "OrderPlaced")) >= ORDERS and await stack.scalar("orders", UNPUBLISHED) == 0
        )

    await eventually(absorbed, within=30, what="every row re-published and its duplicate absorbed")
    recovery = time.monotonic() - restarted  # from the second relay's start
    await eventually(lambda: sent_all(stack), within=30, what="every order email sent")

    per_event = await notifications_per_event(stack, "order_placed")
    mails = message_id_counts(mails_to(stack, emails_of(users), "is placed"))
    handled_ids = handled(notifications, "OrderPlaced")
    duplicate_ids = duplicates(notifications, "OrderPlaced")
    attempts = await stack.rows("orders", "SELECT attempts, count(*) FROM outbox GROUP BY attempts")

    assert killed == -9
    assert unmarked_after_kill == ORDERS  # the kill took the marks with it: nothing was lost as "sent"
    assert first_published == ORDERS
    assert await stack.scalar("orders", UNPUBLISHED) == 0
    assert attempts == [(1, ORDERS)]  # marked once, by the second relay
    assert len(per_event) == ORDERS
    assert set(per_event.values()) == {1}
    assert len(handled_ids) == len(set(handled_ids)) == ORDERS  # each handler ran once per event
    assert sorted(duplicate_ids) == sorted(handled_ids)  # each event came twice; the second was absorbed
    assert len(mails) == ORDERS
    assert set(mails.values()) == {1}  # one email per order, none re-sent
    assert await stack.dead_letters("notifications") == 0
    record(
        Figure(
            "3 relay SIGKILL between publish and mark",
            sent=ORDERS,
            delivered=len(per_event),
            duplicates=len(duplicate_ids),
            lost=ORDERS - len(per_event),
            recovery_seconds=recovery,
            note=(
                f"{first_published} published then killed while the mark waited on a lock; "
                f"{unmarked_after_kill} left unmarked, all re-published by a second relay; "
                f"{sum(mails.values())} emails"
            ),
        )
    )


async def sent_all(stack: FaultStack) -> bool:
    return await sent(stack, "order_placed") == ORDERS
