"""Messages that cannot be handled go to the dead-letter queue, with the reason; the rest flow on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.consumer import REASON_HEADER, ROUTING_KEY_HEADER
from fastmicro.messaging import Broker
from fastmicro.testing import publish_event, publish_raw

from .helpers import SmtpSink, contact_row, eventually_async, new_user, notification_rows


async def take_dead_letters(broker: Broker, message_ids: set[str], *, within: float = 10.0) -> dict[str, Any]:
    """Wait until every message in `message_ids` is in `<namespace>notifications.events.dead`.

    Returns their headers by message id, and takes them off the queue (others are left there).
    """
    queue_name = f"{broker.topology.service_queue('notifications')}.dead"
    found: dict[str, Any] = {}

    async def probe() -> dict[str, Any] | None:
        channel = await broker.channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(queue_name, passive=True)
            held: list[AbstractIncomingMessage] = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                held.append(message)
            for message in held:
                if message.message_id in message_ids:
                    found[message.message_id] = dict(message.headers)
                    await message.ack()
        finally:
            await channel.close()  # the messages not acked go back to the queue
        return found if set(found) == message_ids else None

    return await eventually_async(probe, within=within, every=0.2)


async def test_unparseable_and_invalid_messages_are_dead_lettered_and_the_next_is_handled(
    client: httpx.AsyncClient, test_broker: Broker, smtp_sink: SmtpSink, database: AsyncEngine
) -> None:
    garbage_id, invalid_id = str(uuid.uuid4()), str(uuid.uuid4())
    invalid_user = uuid.uuid4()
    await publish_raw(test_broker, "users.UserCreated", b"not json", message_id=garbage_id)
    invalid = {
        "id": invalid_id,
        "type": "UserCreated",
        "version": 1,
        "source": "users",
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": None,
        "causation_id": None,
        "data": {"user_id": str(invalid_user), "name": "No Email"},  # email is required
    }
    await publish_raw(test_broker, "users.UserCreated", json.dumps(invalid).encode(), message_id=invalid_id)
    user = new_user()
    await publish_event(test_broker, user)

    await smtp_sink.wait_for(user.email)
    dead = await take_dead_letters(test_broker, {garbage_id, invalid_id})
    assert dead[garbage_id][REASON_HEADER].startswith("unparseable envelope")
    assert dead[invalid_id][REASON_HEADER].startswith("invalid UserCreated v1 data")
    assert "email" in dead[invalid_id][REASON_HEADER]
    assert {headers[ROUTING_KEY_HEADER] for headers in dead.values()} == {"users.UserCreated"}
    assert await contact_row(database, invalid_user) is None
    assert await notification_rows(database, invalid_user) == []
