"""Queue types on a real RabbitMQ: what quorum queues add (a delivery limit that dead-letters, a dead
queue read any number of times), and `queues migrate` switching a live topology's type keeping every message."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import aio_pika
import aiormq
import pytest

from fastmicro.consumer import ATTEMPT_HEADER, REASON_HEADER, ROUTING_KEY_HEADER, EventConsumer, Subscription
from fastmicro.dlq import DeadLetterQueues, list_dead_letters, replay_dead_letters
from fastmicro.events import DomainEvent
from fastmicro.letters import DELIVERY_COUNT_HEADER
from fastmicro.messaging import Broker, Topology
from fastmicro.queue_migration import HOLDING_SUFFIX, QueuesInUse, migrate_queues, plan_queues
from fastmicro.queues import DEFAULT_DELIVERY_LIMIT, QueueArguments, QueueType
from fastmicro.runtime import BackgroundRole, Runtime
from fastmicro.settings import ServiceSettings
from fastmicro.testing import TestServers
from fastmicro.testing.plugin import delete_topology
from fastmicro.uow import UnitOfWork

from .conftest import cli


class Shipped(DomainEvent):
    type: ClassVar[str] = "Shipped"
    source: ClassVar[str] = "kernel"

    parcel: str


async def _never(event: Shipped, uow: UnitOfWork) -> None:
    raise AssertionError("no consumer runs in these tests")


def test_classic_queues_keep_the_arguments_they_always_had() -> None:
    """An existing classic deployment declares exactly what it declared before quorum queues came."""
    classic = QueueArguments("classic")
    assert classic.service("s.dead") == {}
    assert classic.dead() == classic.unrouted() == {}
    assert classic.delay(1000, "s") == {
        "x-message-ttl": 1000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "s",
    }


def test_quorum_queues_dead_letter_at_least_once_and_only_the_service_queue_has_a_delivery_limit() -> None:
    quorum = QueueArguments("quorum", delivery_limit=7, broker_major=3)
    assert quorum.service("s.dead") == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "s.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert quorum.delay(500, "s")["x-dead-letter-strategy"] == "at-least-once"
    assert quorum.delay(500, "s")["x-overflow"] == "reject-publish"
    assert quorum.dead() == quorum.unrouted() == {"x-queue-type": "quorum"}  # 3.x: no limit unless one is set
    # RabbitMQ 4 sets 20 unless told -1 (which 3.x would read as a limit): turned off by version.
    assert QueueArguments("quorum", broker_major=4).dead() == {"x-queue-type": "quorum", "x-delivery-limit": -1}


async def _queues(broker: Broker, queue_type: QueueType, delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> list[str]:
    """A service queue and its dead queue of the test's own, declared as the topology declares them."""
    service_queue = broker.topology.service_queue(f"q-{uuid.uuid4().hex[:6]}")
    dead_queue = f"{service_queue}.dead"
    channel = await broker.channel(publisher_confirms=False)
    try:
        arguments = QueueArguments(queue_type, delivery_limit, (await broker.topology.arguments(channel)).broker_major)
        await channel.declare_queue(dead_queue, durable=True, arguments=arguments.dead())
        await channel.declare_queue(service_queue, durable=True, arguments=arguments.service(dead_queue))
    finally:
        await channel.close()
    return [service_queue, dead_queue]


async def _put(broker: Broker, queue: str, message_ids: Sequence[str], headers: dict[str, Any] | None = None) -> None:
    channel = await broker.channel(publisher_confirms=True)
    try:
        for message_id in message_ids:
            message = aio_pika.Message(
                json.dumps({"id": message_id}).encode(),
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=headers,
            )
            await channel.default_exchange.publish(message, routing_key=queue)
    finally:
        await channel.close()


async def _depth(broker: Broker, queue: str) -> int:
    channel = await broker.channel(publisher_confirms=False)
    try:
        return int((await channel.declare_queue(queue, passive=True)).declaration_result.message_count or 0)
    finally:
        await channel.close()


async def _take_all(broker: Broker, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    channel = await broker.channel(publisher_confirms=False)
    try:
        declared = await channel.declare_queue(queue, passive=True)
        taken = []
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        return taken
    finally:
        await channel.close()


async def test_a_message_redelivered_past_the_delivery_limit_is_dead_lettered_not_dropped(
    test_broker: Broker, queues_to_delete: list[str]
) -> None:
    """The second net for poison messages: a consumer that dies on a message every time (here: returns it)."""
    limit = 2
    service_queue, dead_queue = await _queues(test_broker, "quorum", delivery_limit=limit)
    queues_to_delete.extend([service_queue, dead_queue])
    await _put(test_broker, service_queue, ["poison"])

    channel = await test_broker.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(service_queue, passive=True)
        deliveries = 0
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
    finally:
        await channel.close()
    assert deliveries == limit + 1  # the first delivery and `limit` redeliveries; then the broker moved it

    queues = DeadLetterQueues(service_queue, dead_queue)
    async with asyncio.timeout(10):  # dead-lettering is the queue's own step after the last return
        while not (listing := await list_dead_letters(test_broker, queues)).letters:
            await asyncio.sleep(0.05)
    assert [(letter.message_id, letter.reason) for letter in listing.letters] == [("poison", "broker: delivery_limit")]
    assert await _take_all(test_broker, service_queue) == []


async def test_a_quorum_dead_queue_is_read_more_often_than_any_delivery_limit_and_keeps_everything(
    test_broker: Broker, queues_to_delete: list[str]
) -> None:
    """Every `dlq list` spends a delivery on each message it reads; with no limit on the dead queue nothing moves."""
    service_queue, dead_queue = await _queues(test_broker, "quorum")
    queues_to_delete.extend([service_queue, dead_queue])
    queues = DeadLetterQueues(service_queue, dead_queue)
    ids = [f"m{i}" for i in range(3)]
    await _put(test_broker, dead_queue, ids, {REASON_HEADER: "non-retryable: test", ATTEMPT_HEADER: 0})

    for n in range(DEFAULT_DELIVERY_LIMIT + 2):
        listing = await list_dead_letters(test_broker, queues)
        assert [letter.message_id for letter in listing.letters] == ids, (n, listing.depth)
    # The counts were spent (this is a quorum queue counting returns), and no limit acted on them.
    assert all(letter.headers[DELIVERY_COUNT_HEADER] > DEFAULT_DELIVERY_LIMIT for letter in listing.letters)

    await replay_dead_letters(test_broker, queues, ["m0"])
    (replayed,) = await _take_all(test_broker, service_queue)
    assert replayed.message_id == "m0"
    assert (replayed.headers or {}).get(DELIVERY_COUNT_HEADER, 0) == 0  # a copy starts with no deliveries spent
    assert [letter.message_id for letter in (await list_dead_letters(test_broker, queues)).letters] == ["m1", "m2"]


async def _leave(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that takes nothing (prefetch is never reached: the test cancels it at once)."""


def _no_uow() -> UnitOfWork:
    raise AssertionError("no handler runs in these tests")


def _consumer(broker: Broker, service: str) -> EventConsumer[Any]:
    return EventConsumer(
        broker,
        service=service,
        subscriptions=[Subscription(Shipped, _never)],
        uow_factory=_no_uow,
        retry_delays=[0.5, 60.0],
    )


async def _declare(broker: Broker, consumer: EventConsumer[Any]) -> None:
    channel = await broker.channel(publisher_confirms=False)
    try:
        await consumer.declare(channel)
    finally:
        await channel.close()


async def _publish(broker: Broker, event_id: str) -> None:
    """An event as a relay publishes it, through the events exchange."""
    channel = await broker.channel(publisher_confirms=True)
    try:
        exchange = await channel.get_exchange(broker.topology.events_exchange)
        message = aio_pika.Message(
            json.dumps({"id": event_id}).encode(), message_id=event_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await exchange.publish(message, routing_key="kernel.Shipped")
    finally:
        await channel.close()


async def _is_of_type(broker: Broker, queue: str, arguments: dict[str, Any]) -> bool:
    """Whether `queue` exists with these arguments (a declare with others fails); never creates it."""
    channel = await broker.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(queue, durable=True, arguments=arguments)
    except aiormq.exceptions.ChannelPreconditionFailed:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


@pytest.mark.parametrize(("before", "after"), [("classic", "quorum"), ("quorum", "classic")])
async def test_queues_migrate_switches_the_type_of_every_queue_and_keeps_every_message(
    test_servers: TestServers, amqp_namespace: str, before: QueueType, after: QueueType
) -> None:
    """The switch of docs/operations.md on a live topology of the test's own namespace: service, delay and dead
    queues and the unrouted queue hold messages; after `queues migrate` each has the new type and the same
    messages (dead letters with their reason, events routed to the service queue), and a second run does nothing."""
    namespace = f"{amqp_namespace}mig{uuid.uuid4().hex[:6]}."
    old = Broker(test_servers.amqp_url, Topology(namespace, before))
    new = Broker(test_servers.amqp_url, Topology(namespace, after))
    old_consumer, new_consumer = _consumer(old, "kernel"), _consumer(new, "kernel")
    try:
        await _declare(old, old_consumer)
        for n in range(5):
            await _publish(old, f"event-{n}")
        await _put(old, old_consumer.dead_queue_name, ["dead-0", "dead-1"], {REASON_HEADER: "non-retryable: test"})
        slow_retry = old_consumer.retry_queue_names[1]  # 60 s: it still holds its message after the migration
        await _put(old, slow_retry, ["retry-0"], {ATTEMPT_HEADER: 2, ROUTING_KEY_HEADER: "kernel.Shipped"})
        await _put(old, old.topology.unrouted_queue, ["unrouted-0"])

        # A consumer on a queue stops the migration before it touches anything.
        channel = await old.channel(publisher_confirms=False)
        queue = await channel.declare_queue(old_consumer.queue_name, passive=True)
        tag = await queue.consume(_leave)
        with pytest.raises(QueuesInUse):
            await migrate_queues(new, await plan_queues(new, [new_consumer]))
        await queue.cancel(tag)
        await channel.close()

        migration = await migrate_queues(new, await plan_queues(new, [new_consumer]))

        arguments = await _arguments(new)
        expected = {
            old.topology.unrouted_queue: arguments.unrouted(),
            **(await _queue_arguments(new, new_consumer)),
        }
        assert sorted(migration.recreated) == sorted(expected)
        for name, queue_arguments in expected.items():
            assert await _is_of_type(new, name, queue_arguments), name
            assert not await _exists(new, f"{name}{HOLDING_SUFFIX}")
        assert [m.message_id for m in await _take_all(new, new_consumer.queue_name)] == [f"event-{n}" for n in range(5)]
        dead = await _take_all(new, new_consumer.dead_queue_name)
        assert [(m.message_id, (m.headers or {}).get(REASON_HEADER)) for m in dead] == [
            ("dead-0", "non-retryable: test"),
            ("dead-1", "non-retryable: test"),
        ]
        (retry,) = await _take_all(new, slow_retry)
        assert (retry.message_id, (retry.headers or {}).get(ATTEMPT_HEADER)) == ("retry-0", 2)
        assert [m.message_id for m in await _take_all(new, new.topology.unrouted_queue)] == ["unrouted-0"]

        # Bound as before: a new event reaches the recreated service queue; a rerun finds nothing to do.
        await _publish(new, "event-after")
        assert [m.message_id for m in await _take_all(new, new_consumer.queue_name)] == ["event-after"]
        again = await migrate_queues(new, await plan_queues(new, [new_consumer]))
        assert again.recreated == []
    finally:
        await delete_topology(new, tuple(new_consumer.queue_names))
        await old.close()
        await new.close()


async def _arguments(broker: Broker) -> QueueArguments:
    channel = await broker.channel(publisher_confirms=False)
    try:
        return await broker.topology.arguments(channel)
    finally:
        await channel.close()


async def _queue_arguments(broker: Broker, consumer: EventConsumer[Any]) -> dict[str, dict[str, Any]]:
    channel = await broker.channel(publisher_confirms=False)
    try:
        return await consumer.queue_arguments(channel)
    finally:
        await channel.close()


async def _exists(broker: Broker, queue: str) -> bool:
    channel = await broker.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


async def _cli(settings: ServiceSettings, *argv: str) -> int:
    """`python -m <svc> <argv>` in-process, for a service with one consumer."""

    def roles(runtime: Runtime[Any]) -> list[BackgroundRole]:
        return [runtime.consumer([Subscription(Shipped, _never)], _no_uow)]

    return await cli(settings, roles, *argv)


async def test_topology_names_the_migration_when_the_type_changed_and_queues_migrate_makes_it_pass(
    test_servers: TestServers, amqp_namespace: str
) -> None:
    """The commands of the switch, as an operator runs them: `topology` refuses (exit 1), `queues migrate` fixes it."""
    namespace = f"{amqp_namespace}cli{uuid.uuid4().hex[:6]}."
    quorum = ServiceSettings(
        service_name="kernel",
        environment="test",
        database_url="postgresql+asyncpg://kernel@127.0.0.1:9/unused",
        amqp_url=test_servers.amqp_url,
        amqp_namespace=namespace,
        queue_type="quorum",
        _env_file=None,
    )
    classic = quorum.model_copy(update={"queue_type": "classic"})
    broker = Broker(test_servers.amqp_url, Topology(namespace))
    try:
        assert await _cli(classic, "topology") == 0
        assert await _cli(quorum, "topology") == 1  # logged: queue_arguments_differ, with the command to run
        assert await _cli(quorum, "queues", "migrate") == 0
        assert await _cli(quorum, "topology") == 0
        assert await _cli(classic, "topology") == 1
    finally:
        consumer = EventConsumer(
            broker, service="kernel", subscriptions=[Subscription(Shipped, _never)], uow_factory=_no_uow
        )
        await delete_topology(broker, tuple(consumer.queue_names))  # the default delays, as the settings'
        await broker.close()
