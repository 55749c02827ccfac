"""Scenario 5: a consumer is stopped with SIGTERM (as an orchestrator stops a pod) with messages in hand.

Promise: the worker takes no more messages, finishes those in hand (their effects commit and
they are acknowledged), and exits 0; what it had not started goes back to the queue. After a
restart nothing is handled twice (no duplicate even reaches the inbox) and every event is
handled once.

As in scenario 4 the worker's database is slowed down by a proxy, so handlers are in flight
when the signal arrives; the prefetch is small, so most of the burst is still queued.
"""

from __future__ import annotations

import time

from fastmicro.testing.plugin import ProcessFactory, ProxyFactory
from fault_stack import FaultStack, eventually
from figures import Figure, Record
from scenarios import mails_to, sent
from workers import (
    duplicates,
    emails_of,
    handled,
    handled_after,
    message_id_counts,
    notifications_per_event,
    publish_users,
    queue_depth,
    start_worker,
)

EVENTS = 60
STOP_AFTER = 15  # handled by the first worker before the SIGTERM
PREFETCH = 10
LATENCY = 0.02


async def test_sigterm_finishes_the_messages_in_hand_exits_0_and_nothing_is_handled_twice(
    stack: FaultStack, service_process: ProcessFactory, tcp_proxy: ProxyFactory, record: Record
) -> None:
    """SIGTERM mid-burst: exit code 0, what was handled is committed, the rest is handled once after a restart."""
    database = await tcp_proxy(stack.databases["notifications"])
    settings = {
        "database_url": database.url_for(stack.databases["notifications"]),
        "consumer_prefetch": PREFETCH,
        "db_pool_timeout": 30.0,
    }
    users = await publish_users(stack, EVENTS)
    ids = {str(user.id) for user in users}

    database.slow_down(LATENCY)
    first = await start_worker(service_process, stack, "notifications", "notifications-1", **settings)
    await first.wait_for("event_handled", count=STOP_AFTER, event_type="UserCreated")
    exit_code = await first.terminate()
    by_first = handled(first, "UserCreated")
    committed = set(await notifications_per_event(stack, "welcome"))  # before anything else runs
    finished_in_hand = handled_after(first, "worker_stopping", "UserCreated")

    await database.restore()
    restarted = time.monotonic()
    second = await start_worker(service_process, stack, "notifications", "notifications-2", **settings)

    async def all_handled() -> bool:
        return len(await notifications_per_event(stack, "welcome")) == EVENTS

    await eventually(all_handled, within=30, what="every event handled")
    recovery = time.monotonic() - restarted  # from the second worker's start
    await eventually(lambda: sent_all(stack), within=30, what="every welcome email sent")
    second_exit_code = await second.terminate()

    by_second = handled(second, "UserCreated")
    absorbed = duplicates(second, "UserCreated")
    per_event = await notifications_per_event(stack, "welcome")
    mails = message_id_counts(mails_to(stack, emails_of(users), "Welcome"))

    assert exit_code == 0, first.tail()
    assert second_exit_code == 0, second.tail()
    assert first.count("consumer_stopped") == 1
    assert STOP_AFTER <= len(by_first) < EVENTS  # stopped with part of the burst still queued
    assert committed == set(by_first)  # every message it acked has its effect, and nothing else committed
    assert absorbed == []  # nothing it handled came back
    assert not set(by_first) & set(by_second)
    assert len(by_first) + len(by_second) == EVENTS
    assert set(per_event) == ids
    assert set(per_event.values()) == {1}
    assert len(mails) == EVENTS
    assert set(mails.values()) == {1}  # one email each, none re-sent
    assert await queue_depth(stack, "notifications") == 0
    assert await stack.dead_letters("notifications") == 0
    record(
        Figure(
            "5 consumer SIGTERM mid-burst",
            sent=EVENTS,
            delivered=len(per_event),
            duplicates=len(absorbed),
            lost=EVENTS - len(per_event),
            recovery_seconds=recovery,
            note=(
                f"exit {exit_code}; first handled {len(by_first)} ({finished_in_hand} finished after SIGTERM), "
                f"second {len(by_second)}; prefetch {PREFETCH}"
            ),
        )
    )


async def sent_all(stack: FaultStack) -> bool:
    return await sent(stack, "welcome") == EVENTS
