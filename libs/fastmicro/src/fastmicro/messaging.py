"""RabbitMQ: the topology of docs/contract.md, a connection that outlives broker outages, and the publisher."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
)

from fastmicro.events import Envelope
from fastmicro.queues import DEFAULT_DELIVERY_LIMIT, QueueArguments, QueueType, broker_major

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Topology:
    """Every exchange and queue name in one place. `namespace` prefixes them all (tests use it).

    `queue_type` and `delivery_limit` decide the queues' arguments (fastmicro.queues).
    """

    namespace: str = ""
    queue_type: QueueType = "classic"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}fastmicro.events"

    @property
    def unrouted_exchange(self) -> str:
        return f"{self.namespace}fastmicro.unrouted"

    @property
    def unrouted_queue(self) -> str:
        return f"{self.namespace}fastmicro.unrouted"

    def service_queue(self, service: str) -> str:
        return f"{self.namespace}{service}.events"

    async def arguments(self, channel: AbstractChannel) -> QueueArguments:
        """The queues' arguments for this topology on the broker `channel` is open on."""
        return QueueArguments(self.queue_type, self.delivery_limit, await broker_major(channel))


async def declare_events_exchange(channel: AbstractRobustChannel, topology: Topology) -> AbstractExchange:
    """Declare (idempotently) the events exchange and its alternate exchange for unrouted messages."""
    unrouted = await channel.declare_exchange(topology.unrouted_exchange, ExchangeType.FANOUT, durable=True)
    arguments = await topology.arguments(channel)
    queue = await channel.declare_queue(topology.unrouted_queue, durable=True, arguments=arguments.unrouted())
    await queue.bind(unrouted)
    return await channel.declare_exchange(
        topology.events_exchange,
        ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": topology.unrouted_exchange},
    )


class Broker:
    """One robust AMQP connection per process.

    The first connection is retried here with backoff (aio-pika only retries once connected);
    afterwards aio-pika reconnects by itself and restores the channels and topology it declared.
    """

    def __init__(self, url: str, topology: Topology, *, connect_timeout: float = 3.0) -> None:
        self.url = url
        self.topology = topology
        self._connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None
        self._lock = asyncio.Lock()

    @property
    def is_connected(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def connection(self) -> AbstractRobustConnection:
        """The live connection, connecting first if there is none yet (raises if the broker is down)."""
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                # aio-pika retries at a fixed interval: a per-process random one keeps replicas
                # that lost the broker together from reconnecting in step, about once a second each.
                self._connection = await aio_pika.connect_robust(
                    self.url,
                    timeout=self._connect_timeout,
                    reconnect_interval=random.uniform(0.5, 1.5),  # noqa: S311 - jitter, not security
                )
                log.info("broker_connected")
            return self._connection

    async def channel(self, *, publisher_confirms: bool = True) -> AbstractRobustChannel:
        connection = await self.connection()
        return await connection.channel(publisher_confirms=publisher_confirms)

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None


class BrokerUnavailable(ConnectionError):
    """The broker connection is down (aio-pika is reconnecting): nothing can be published now."""


class Publisher:
    """Publishes envelopes to the events exchange and waits for the broker's confirm of each."""

    def __init__(self, broker: Broker, *, timeout: float = 5.0) -> None:
        self._broker = broker
        self._timeout = timeout
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def exchange(self) -> AbstractExchange:
        """The events exchange on a confirming channel, opened once; raises while the broker is down.

        The channel is robust: after a broker outage aio-pika reopens it and this object stays valid.
        Until then, rather than wait for a confirm that cannot come, this raises `BrokerUnavailable`
        at once: the relay checks it before it claims rows, so an outage locks and bumps nothing.
        """
        async with self._lock:
            if self._exchange is None:
                channel = await asyncio.wait_for(self._broker.channel(publisher_confirms=True), self._timeout)
                self._exchange = await declare_events_exchange(channel, self._broker.topology)
                self._channel = channel
            elif not self._broker.is_connected or self._channel is None or self._channel.is_closed:
                raise BrokerUnavailable("the broker connection is down; aio-pika is reconnecting")
            return self._exchange

    async def publish(self, envelope: Envelope) -> None:
        """Publish with the AMQP properties docs/contract.md requires; returns once the broker confirmed."""
        await self.publish_json(
            envelope.model_dump_json().encode(),
            message_id=envelope.id,
            type=envelope.type,
            correlation_id=envelope.correlation_id,
            occurred_at=envelope.occurred_at,
            routing_key=envelope.routing_key,
        )

    async def publish_json(
        self,
        body: bytes,
        *,
        message_id: UUID,
        type: str,
        correlation_id: str | None,
        occurred_at: datetime,
        routing_key: str,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """`publish` for an envelope already serialised (the outbox keeps them so): the same properties.

        `headers`: the trace context (`traceparent`/`tracestate`) of the transaction that emitted it, if any.
        """
        exchange = await self.exchange()
        message = aio_pika.Message(
            body,
            headers=headers,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(message_id),
            type=type,
            correlation_id=correlation_id,
            timestamp=occurred_at,
        )
        # mandatory=False: the alternate exchange keeps what no queue is bound for.
        await exchange.publish(message, routing_key, mandatory=False, timeout=self._timeout)
