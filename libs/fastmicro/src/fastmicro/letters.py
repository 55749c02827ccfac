"""The headers the consumer runtime writes on a message, and the copy of a message it republishes.

A message is copied, never moved: to a delay queue (a retry), to the dead-letter queue, and back
from there (`dlq replay`). Every copy keeps the body and the AMQP properties, drops what an
earlier death said about it (a copy never carries a stale or forged reason) and the delivery
count a quorum queue wrote (the copy is a new message to its queue), and records the
routing key it was first published with (the default exchange replaces it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

#: Attempts already made: written by the runtime only (see `fastmicro.handling.attempt_of`).
ATTEMPT_HEADER = "x-fastmicro-attempt"
#: Why a message was dead-lettered.
REASON_HEADER = "x-fastmicro-dead-reason"
#: The failure's type and SQLSTATE, never its text (`fastmicro.handler_errors`).
ERROR_HEADER = "x-fastmicro-error"
#: The routing key the message was published with.
ROUTING_KEY_HEADER = "x-fastmicro-routing-key"
#: When the consumer dead-lettered it (ISO 8601, UTC).
DEAD_AT_HEADER = "x-fastmicro-dead-at"
#: How many times it was replayed out of the dead-letter queue.
REPLAYED_HEADER = "x-fastmicro-replayed"

#: What a dead letter says about its death.
DEATH_HEADERS = frozenset({REASON_HEADER, ERROR_HEADER, DEAD_AT_HEADER})
#: Written by a quorum queue on each redelivery: its count of the queue's deliveries, not of the copy's.
DELIVERY_COUNT_HEADER = "x-delivery-count"


_NOT_COPIED = DEATH_HEADERS | {DELIVERY_COUNT_HEADER}


def routing_key_of(message: AbstractIncomingMessage) -> str:
    """The key it was first published with: the header once copied, else the delivery's own."""
    return str((message.headers or {}).get(ROUTING_KEY_HEADER) or message.routing_key or "")


def message_copy(message: AbstractIncomingMessage, headers: Mapping[str, Any]) -> aio_pika.Message:
    """A persistent copy of `message` with its death headers dropped and `headers` set over the rest."""
    kept = {key: value for key, value in (message.headers or {}).items() if key not in _NOT_COPIED}
    return aio_pika.Message(
        message.body,
        headers={**kept, ROUTING_KEY_HEADER: routing_key_of(message), **headers},
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
    )
