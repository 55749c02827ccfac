"""Scenario 4: a consumer is SIGKILLed with handlers in the middle of their transactions.

Promise: what it had not acknowledged returns to the queue and a second worker handles it; a
message whose transaction had committed before the kill (but was not acked) is found in the
inbox and skipped. Every event has its effect exactly once (one notification each), none is
lost, none is dead-lettered. The worker's email sender dies too, with rows claimed under its
lease: each goes out once that lease has ended, and the only mails that may go twice are those
in flight at the kill (sent, their `sent` mark not yet written: one per SMTP connection at most),
as docs/operations.md promises.

The worker's database goes through a proxy that slows every exchange down, so handlers are
slow and many are in flight when the kill lands. Every message is queued before the first
worker starts and its prefetch covers them all, so everything the second worker receives is
a redelivery.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from fastmicro.db import utcnow
from fastmicro.testing.plugin import ProcessFactory, ProxyFactory
from fault_stack import FaultStack, eventually
from figures import Figure, Record
from scenarios import mails_to, sent, settled_sessions
from workers import (
    duplicates,
    emails_of,
    handled,
    message_id_counts,
    notifications_per_event,
    publish_users,
    queue_depth,
    start_worker,
)

EVENTS = 100
KILL_AFTER = 25  # handled by the first worker before the kill
LATENCY = 0.02  # seconds added to every chunk between the worker and its database
SEND_REST = 20.0  # seconds for the second worker to send what is left, once due: generous, not a target


async def test_a_consumer_killed_mid_handlers_loses_nothing_and_duplicates_nothing(
    stack: FaultStack, service_process: ProcessFactory, tcp_proxy: ProxyFactory, record: Record
) -> None:
    """After a SIGKILL mid-burst a second worker finishes the burst: one notification per event, none lost."""
    database = await tcp_proxy(stack.databases["notifications"])
    settings = {
        "database_url": database.url_for(stack.databases["notifications"]),
        "consumer_prefetch": EVENTS,  # the first worker holds the whole burst
        "db_pool_timeout": 30.0,  # handlers queue for a slow pool rather than fail over to retries
    }
    users = await publish_users(stack, EVENTS)
    ids = {str(user.id) for user in users}

    database.slow_down(LATENCY)
    first = await start_worker(service_process, stack, "notifications", "notifications-1", **settings)
    await first.wait_for("event_handled", count=KILL_AFTER, event_type="UserCreated")
    killed = await first.kill()
    await database.cut()  # what the dead worker still had in the proxy never reaches the database
    await settled_sessions(stack, "notifications")
    leased = await leases(stack)  # the rows its sender had claimed and not marked
    await database.restore()
    by_first = handled(first, "UserCreated")

    restarted = time.monotonic()
    second = await start_worker(service_process, stack, "notifications", "notifications-2", **settings)

    async def all_handled() -> bool:
        return len(await notifications_per_event(stack, "welcome")) == EVENTS

    await eventually(all_handled, within=30, what="every event handled")
    recovery = time.monotonic() - restarted  # from the second worker's start
    # The dead sender's rows are due when its lease ends; the second sender sleeps until the soonest
    # due row or its poll interval. Beyond that, a few seconds to send what is left.
    notifications = stack.settings("notifications")
    lease_ends = max(leased.values(), default=utcnow())
    within = max(0.0, (lease_ends - utcnow()).total_seconds()) + notifications.sender_poll_interval + SEND_REST
    await eventually(lambda: sent_all(stack), within=within, what="every welcome email sent")
    stopped = await second.terminate()  # graceful: what it holds finishes, its log is complete

    by_second = handled(second, "UserCreated")
    absorbed = duplicates(second, "UserCreated")
    per_event = await notifications_per_event(stack, "welcome")
    mails = message_id_counts(mails_to(stack, emails_of(users), "Welcome"))
    inbox = await stack.scalar("notifications", "SELECT count(*) FROM inbox WHERE handler = 'on_user_created'")

    # The first worker's log can miss its last acks (a SIGKILL between ack and log line):
    # what it did is exact from the inbox, as everything the second worker did is in its log.
    by_first_effects = EVENTS - len(by_second)
    assert killed == -9
    assert KILL_AFTER <= len(by_first) <= by_first_effects < EVENTS  # killed with part of the burst in hand
    assert stopped == 0
    assert set(per_event) == ids  # none lost
    assert set(per_event.values()) == {1}  # none doubled
    assert inbox == EVENTS
    assert not set(by_first) & set(by_second)  # no handler ran twice for one event
    assert len(by_second) == len(set(by_second))
    assert set(absorbed) <= ids - set(by_second)
    assert len(mails) == EVENTS  # one email (Message-ID) per event
    # Leased rows went out only once their lease had ended: no other sender took them early.
    sent_at = await sent_times(stack, leased)
    assert all(sent_at[row] >= lease_end for row, lease_end in leased.items())
    # At most the mails in flight at the kill went twice (one per SMTP connection), all of them leased rows.
    repeated = {message_id for message_id, copies in mails.items() if copies > 1}
    assert sum(mails.values()) - len(mails) <= stack.settings("notifications").smtp_connections
    assert repeated <= {f"<{row}@notifications.fastmicro>" for row in leased}
    assert await queue_depth(stack, "notifications") == 0
    assert await stack.dead_letters("notifications") == 0
    resent = sum(mails.values()) - len(mails)
    record(
        Figure(
            "4 consumer SIGKILL mid-handlers",
            sent=EVENTS,
            delivered=len(per_event),
            duplicates=len(absorbed),
            lost=EVENTS - len(per_event),
            recovery_seconds=recovery,
            note=(
                f"handled by first {by_first_effects} ({len(by_first)} logged before the kill), "
                f"by second {len(by_second)}; {len(by_second) + len(absorbed)} redelivered; "
                f"{len(leased)} mails leased by the dead sender, sent after its lease; "
                f"{resent} email(s) re-sent with the same Message-ID"
            ),
        )
    )


async def sent_all(stack: FaultStack) -> bool:
    return await sent(stack, "welcome") == EVENTS


async def leases(stack: FaultStack) -> dict[uuid.UUID, datetime]:
    """Pending rows whose next attempt was moved past their creation: leased by a sender (no send failed here)."""
    rows = await stack.rows(
        "notifications",
        "SELECT id, next_attempt_at FROM notifications WHERE status = 'pending' AND next_attempt_at > created_at",
    )
    return dict(rows)


async def sent_times(stack: FaultStack, ids: dict[uuid.UUID, datetime]) -> dict[uuid.UUID, datetime]:
    rows = await stack.rows(
        "notifications", "SELECT id, sent_at FROM notifications WHERE id = ANY(:ids)", ids=list(ids)
    )
    return dict(rows)
