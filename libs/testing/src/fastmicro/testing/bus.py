"""Put messages on the bus from a test: well-formed events, or anything at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aio_pika

from fastmicro.events import DomainEvent, Envelope
from fastmicro.messaging import Broker, Publisher, declare_events_exchange


async def publish_event(broker: Broker, event: DomainEvent, *, correlation_id: str | None = None) -> Envelope:
    """Publish `event` as its producer's relay would, and return its envelope."""
    envelope = Envelope.wrap(event)
    if correlation_id is not None:
        envelope = envelope.model_copy(update={"correlation_id": correlation_id})
    await Publisher(broker).publish(envelope)
    return envelope


async def publish_envelope(broker: Broker, envelope: Envelope) -> None:
    """Publish a given envelope again, e.g. to deliver the same event twice."""
    await Publisher(broker).publish(envelope)


async def publish_raw(
    broker: Broker,
    routing_key: str,
    body: bytes,
    *,
    message_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    type_: str | None = None,
) -> None:
    """Publish arbitrary bytes, with any headers and AMQP type, to the events exchange (poison, forgeries)."""
    channel = await broker.channel(publisher_confirms=True)
    try:
        exchange = await declare_events_exchange(channel, broker.topology)
        message = aio_pika.Message(
            body,
            content_type="application/json",
            message_id=message_id,
            headers=dict(headers or {}),
            type=type_,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(message, routing_key, mandatory=False)
    finally:
        await channel.close()
