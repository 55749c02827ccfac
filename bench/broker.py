"""The bench's own view of RabbitMQ: queue depth and consumers, purge, and removing its namespace."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from bench.config import Setup
from fastmicro.messaging import Topology
from fastmicro.settings import ServiceSettings

#: The services that consume, hence own a queue (and its delay and dead-letter queues).
CONSUMING = ("orders", "notifications")


class Queues:
    def __init__(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        self._connection = connection
        self._channel = channel

    async def depth(self, queue: str) -> int:
        declared = await self._channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)

    async def consumers(self, queue: str) -> int:
        declared = await self._channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)

    async def purge(self, *queues: str) -> None:
        for queue in queues:
            declared = await self._channel.declare_queue(queue, passive=True)
            await declared.purge()


@contextlib.asynccontextmanager
async def queues(setup: Setup) -> AsyncIterator[Queues]:
    connection = await aio_pika.connect(setup.amqp_url)
    try:
        yield Queues(connection, await connection.channel())
    finally:
        await connection.close()


def namespace_queues(setup: Setup) -> list[str]:
    """Every queue the services' topology declares in the bench's namespace."""
    topology = Topology(setup.amqp_namespace)
    delays = ServiceSettings.model_fields["consumer_retry_delays"].default
    names = [topology.unrouted_queue]
    for service in CONSUMING:
        queue = topology.service_queue(service)
        names += [queue, f"{queue}.dead", *(f"{queue}.retry.{int(delay * 1000)}ms" for delay in delays)]
    return names


async def delete_namespace(setup: Setup) -> None:
    """Remove the bench's exchanges and queues (they are declared again by `python -m <svc> topology`)."""
    topology = Topology(setup.amqp_namespace)
    connection = await aio_pika.connect(setup.amqp_url)
    try:
        for queue in namespace_queues(setup):
            channel = await connection.channel()  # a failed delete closes its channel
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (topology.events_exchange, topology.unrouted_exchange):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()
