"""`python -m <svc> queues migrate`: recreate the queues whose arguments the code no longer declares.

A queue's type and arguments are fixed when it is created: redeclaring it with others fails
(PRECONDITION_FAILED), so a switch of `QUEUE_TYPE` (classic to quorum, or back) means deleting
and recreating each queue with what it holds kept. This moves the messages through a holding
queue of the same name with `.migrating` appended (classic, no TTL, so nothing expires there):

1. drain, for each queue whose arguments differ (delay queues first, so nothing dead-letters
   into a service queue that is being recreated; then the service, dead and unrouted queues):
   declare the holding queue, bind it as the queue is bound (so an event published meanwhile
   lands there), unbind the queue, move its messages to the holding queue, delete it;
2. fill, in the order the queues dead-letter into each other (dead, service, delay): declare
   the queue as the code wants it, bind it, move the holding queue's messages back, delete the
   holding queue.

A move takes one message (unacked), publishes its copy with publisher confirms and acks the
original only once the broker confirmed the copy: a crash mid-move can duplicate a message,
which the consumers' inbox absorbs, never lose one. A rerun picks up where a run stopped (a
holding queue left behind is emptied into its queue). The service's workers must be stopped:
the command refuses to touch a queue that has consumers. Publishers may keep running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from fastmicro.consumer import EventConsumer
from fastmicro.letters import DEATH_HEADERS, message_copy
from fastmicro.messaging import Broker

log = structlog.get_logger(__name__)

HOLDING_SUFFIX = ".migrating"
_PUBLISH_TIMEOUT = 10.0


class QueuesInUse(Exception):
    """A queue to migrate has consumers: stop the service's workers first."""


@dataclass(frozen=True)
class QueuePlan:
    """One queue as the code declares it: its arguments and what it is bound to."""

    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key)
    kind: str = "service"  # service, delay, dead or unrouted: the order of the two phases

    @property
    def holding(self) -> str:
        return f"{self.name}{HOLDING_SUFFIX}"


@dataclass
class Migration:
    """What a run did: the queues it recreated and the messages it moved through holding queues."""

    recreated: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)


_DRAIN_ORDER = ("delay", "service", "dead", "unrouted")
_FILL_ORDER = ("unrouted", "dead", "service", "delay")


async def plan_queues(broker: Broker, consumers: Sequence[EventConsumer[Any]]) -> list[QueuePlan]:
    """Every queue of the topology these consumers use, with its arguments and bindings."""
    topology = broker.topology
    channel = await broker.channel(publisher_confirms=False)
    try:
        arguments = await topology.arguments(channel)
        plans = [
            QueuePlan(topology.unrouted_queue, arguments.unrouted(), ((topology.unrouted_exchange, ""),), "unrouted")
        ]
        for consumer in consumers:
            for name, queue_arguments in (await consumer.queue_arguments(channel)).items():
                if name == consumer.queue_name:
                    bindings = tuple((topology.events_exchange, key) for key in consumer.routing_keys)
                    plans.append(QueuePlan(name, queue_arguments, bindings, "service"))
                elif name == consumer.dead_queue_name:
                    plans.append(QueuePlan(name, queue_arguments, (), "dead"))
                else:
                    plans.append(QueuePlan(name, queue_arguments, (), "delay"))
        return plans
    finally:
        await channel.close()


async def migrate_queues(broker: Broker, plans: Sequence[QueuePlan]) -> Migration:
    """Recreate every queue of `plans` whose arguments differ, keeping its messages (see the module's notes)."""
    migration = Migration()
    stale = [plan for plan in plans if await _differs(broker, plan)]
    busy = [plan.name for plan in stale if await _consumers(broker, plan.name)]
    if busy:
        raise QueuesInUse(f"queues with consumers: {', '.join(busy)} (stop the service's workers first)")
    for plan in sorted(stale, key=lambda p: _DRAIN_ORDER.index(p.kind)):
        migration.moved[plan.name] = await _drain(broker, plan)
        migration.recreated.append(plan.name)
    for plan in sorted(plans, key=lambda p: _FILL_ORDER.index(p.kind)):
        moved = await _fill(broker, plan)
        if moved is not None:
            migration.moved[plan.name] = migration.moved.get(plan.name, 0) + moved
    log.info("queues_migrated", recreated=migration.recreated, moved=migration.moved)
    return migration


async def _differs(broker: Broker, plan: QueuePlan) -> bool:
    """Whether the queue exists with other arguments (a declare with the code's fails); never creates it."""
    if not await _exists(broker, plan.name):
        return False
    channel = await broker.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(plan.name, durable=True, arguments=plan.arguments)
    except aiormq.exceptions.ChannelPreconditionFailed:
        return True
    finally:
        with contextlib.suppress(Exception):  # closed by the broker when the declare failed
            await channel.close()
    return False


async def _exists(broker: Broker, name: str) -> bool:
    channel = await broker.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return True


async def _consumers(broker: Broker, name: str) -> int:
    channel = await broker.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.consumer_count or 0)
    finally:
        await channel.close()


async def _drain(broker: Broker, plan: QueuePlan) -> int:
    channel = await broker.channel(publisher_confirms=True)
    try:
        holding = await channel.declare_queue(plan.holding, durable=True)
        for exchange, key in plan.bindings:
            await holding.bind(exchange, key)
        queue = await channel.declare_queue(plan.name, passive=True)
        for exchange, key in plan.bindings:
            await queue.unbind(exchange, key)
        moved = await _move(channel, plan.name, plan.holding)
        await channel.queue_delete(plan.name)
        log.info("queue_drained", queue=plan.name, to=plan.holding, moved=moved)
        return moved
    finally:
        if not channel.is_closed:
            await channel.close()


async def _fill(broker: Broker, plan: QueuePlan) -> int | None:
    """Declare the queue as the code wants it and empty its holding queue into it, if there is one.

    Without a holding queue there is nothing to give back: what is missing is the `topology`
    command's to declare (on a new broker the exchanges do not exist yet).
    """
    if not await _exists(broker, plan.holding):
        return None
    channel = await broker.channel(publisher_confirms=True)
    try:
        queue = await channel.declare_queue(plan.name, durable=True, arguments=plan.arguments)
        for exchange, key in plan.bindings:
            await queue.bind(exchange, key)
        holding = await channel.declare_queue(plan.holding, passive=True)
        for exchange, key in plan.bindings:
            await holding.unbind(exchange, key)  # the queue is bound: new events go there alone
        moved = await _move(channel, plan.holding, plan.name)
        await channel.queue_delete(plan.holding)
        log.info("queue_filled", queue=plan.name, moved=moved)
        return moved
    finally:
        if not channel.is_closed:
            await channel.close()


async def _move(channel: AbstractChannel, source: str, target: str) -> int:
    """Move every message of `source` to `target`: copy, confirmed by the broker, then ack the original."""
    queue = await channel.declare_queue(source, passive=True)
    moved = 0
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        confirm = await channel.default_exchange.publish(
            _faithful_copy(message), routing_key=target, mandatory=True, timeout=_PUBLISH_TIMEOUT
        )
        if not isinstance(confirm, aiormq.spec.Basic.Ack):
            await message.nack(requeue=True)
            raise RuntimeError(f"{target} did not take a message moved from {source}")
        await message.ack()
        moved += 1
    return moved


def _faithful_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The message as it was, death headers included (a dead letter keeps its reason)."""
    death = {key: value for key, value in (message.headers or {}).items() if key in DEATH_HEADERS}
    return message_copy(message, death)
