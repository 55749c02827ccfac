"""Background roles wait for a lost broker with backoff and jitter: no hot loop, and they resume alone.

An orders worker (relay, consumer, retention) and a notifications worker (consumer, sender) run
as real processes with the broker behind a proxy. While it is cut, the relay has an event to
publish and both consumers have lost their channel; the CPU each process burns is read from
/proc. A loop that retried without pausing would use a whole core; the bound asserted is a
quarter of one, far above what backoff costs and far below any busy loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from fastmicro.testing import ServiceProcess
from fastmicro.testing.plugin import ProcessFactory, ProxyFactory
from fault_stack import FaultStack, eventually
from figures import Figure, Record
from scenarios import sent
from workers import place_orders

OUTAGE_SECONDS = 6.0
HOT_LOOP_BOUND = 0.25  # of one core


def cpu_seconds(process: ServiceProcess) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_workers_idle_while_the_broker_is_away_and_resume_by_themselves(
    stack: FaultStack, tcp_proxy: ProxyFactory, service_process: ProcessFactory, record: Record
) -> None:
    broker = await tcp_proxy(stack.amqp_url)
    amqp_url = broker.url_for(stack.amqp_url)
    orders = await service_process(
        "orders", env=stack.env("orders", amqp_url=amqp_url), name="orders", ready="consumer_started"
    )
    notifications = await service_process(
        "notifications", env=stack.env("notifications", amqp_url=amqp_url), name="notif", ready="consumer_started"
    )
    user_id, _ = await stack.user_created()
    await eventually(lambda: welcomed(stack), what="the welcome notification")

    await broker.cut()
    await place_orders(stack, [user_id], 1)  # the relay is woken with an event it cannot publish
    await orders.wait_for("outbox_relay_failed", within=10)
    before = {p.name: cpu_seconds(p) for p in (orders, notifications)}
    started = time.monotonic()
    await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: what the workers do in it is measured
    elapsed = time.monotonic() - started
    share = {p.name: (cpu_seconds(p) - before[p.name]) / elapsed for p in (orders, notifications)}
    relay_attempts = orders.count("outbox_relay_failed")

    await broker.restore()
    recovery = await eventually(
        lambda: placed_notification_sent(stack), within=60, what="the order placed during the outage notified"
    )

    assert all(value < HOT_LOOP_BOUND for value in share.values()), share
    assert await sent(stack, "order_placed") == 1
    assert await stack.scalar("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    record(
        Figure(
            "10 workers idle through a broker outage",
            sent=1,
            delivered=await sent(stack, "order_placed"),
            duplicates=0,
            lost=0,
            recovery_seconds=recovery,
            note=(
                f"CPU over {elapsed:.1f}s cut: orders {share['orders']:.1%}, notifications {share['notif']:.1%} "
                f"of a core; relay attempts {relay_attempts}"
            ),
        )
    )


async def welcomed(stack: FaultStack) -> bool:
    return await sent(stack, "welcome") == 1


async def placed_notification_sent(stack: FaultStack) -> bool:
    return await sent(stack, "order_placed") == 1
