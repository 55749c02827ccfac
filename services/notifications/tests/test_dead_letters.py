"""Messages that cannot be handled go to the dead-letter queue, with the reason; the rest flow on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.consumer import ATTEMPT_HEADER, REASON_HEADER, ROUTING_KEY_HEADER
from fastmicro.messaging import Broker
from fastmicro.testing import publish_event, publish_raw
from notifications.settings import NotificationsSettings

from .helpers import SmtpSink, contact_row, eventually_async, new_user, notification_rows, unique_email


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


def patience(settings: NotificationsSettings) -> float:
    """How long the consumer may take to keep a promise here: all its retries, and a margin for a busy machine."""
    return sum(settings.consumer_retry_delays) + 10.0


def raw_envelope(type_: str, source: str, data: dict[str, Any]) -> tuple[str, bytes]:
    """A message id and an envelope built by hand: what no producer would send, but anyone can publish."""
    message_id = str(uuid.uuid4())
    envelope = {
        "id": message_id,
        "type": type_,
        "version": 1,
        "source": source,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": None,
        "causation_id": None,
        "data": data,
    }
    return message_id, json.dumps(envelope).encode()


async def test_a_user_created_with_a_5_mb_name_is_dead_lettered_unread_and_nobody_is_written_to(
    client: httpx.AsyncClient,
    test_broker: Broker,
    smtp_sink: SmtpSink,
    database: AsyncEngine,
    settings: NotificationsSettings,
) -> None:
    victim, email = uuid.uuid4(), unique_email("huge")
    message_id, body = raw_envelope(
        "UserCreated", "users", {"user_id": str(victim), "email": email, "name": "N" * 5_000_000}
    )
    await publish_raw(test_broker, "users.UserCreated", body, message_id=message_id)
    user = new_user()
    await publish_event(test_broker, user)

    await smtp_sink.wait_for(user.email, within=patience(settings))
    dead = await take_dead_letters(test_broker, {message_id}, within=patience(settings))
    limit = settings.consumer_max_message_bytes
    assert dead[message_id][REASON_HEADER] == f"message too large: {len(body)} bytes, the limit is {limit}"
    assert await contact_row(database, victim) is None
    assert await notification_rows(database, victim) == []
    assert smtp_sink.to(email) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "N" * 101),
        ("name", "Nul\x00Name"),
        ("email", "nul\x00@example.com"),
        ("email", "e" * 243 + "@example.com"),
    ],
    ids=["name-too-long", "nul-in-name", "nul-in-email", "email-too-long"],
)
@pytest.mark.usefixtures("client")
async def test_user_data_no_producer_could_send_is_dead_lettered_at_once(
    test_broker: Broker,
    database: AsyncEngine,
    settings: NotificationsSettings,
    field: str,
    value: str,
) -> None:
    """The contract's bounds (its producer's): refused at parsing, never retried, never stored or mailed."""
    victim = uuid.uuid4()
    data = {"user_id": str(victim), "email": unique_email("bounded"), "name": "Ada", field: value}
    message_id, body = raw_envelope("UserCreated", "users", data)
    await publish_raw(test_broker, "users.UserCreated", body, message_id=message_id)

    dead = await take_dead_letters(test_broker, {message_id}, within=patience(settings))
    assert dead[message_id][REASON_HEADER].startswith(f"invalid UserCreated v1 data: {field}: ")
    assert dead[message_id][ATTEMPT_HEADER] == 0
    assert await contact_row(database, victim) is None
    assert await notification_rows(database, victim) == []


@pytest.mark.parametrize(
    "lines",
    [
        [{"sku": "NUL\x00SKU", "quantity": 1, "unit_price": 100}],
        [{"sku": "S" * 65, "quantity": 1, "unit_price": 100}],
        [{"sku": "SKU", "quantity": 1, "unit_price": 1}] * 101,
    ],
    ids=["nul-in-sku", "sku-too-long", "too-many-lines"],
)
@pytest.mark.usefixtures("client")
async def test_an_order_no_producer_could_send_is_dead_lettered_at_once_and_mails_nothing(
    test_broker: Broker,
    smtp_sink: SmtpSink,
    database: AsyncEngine,
    settings: NotificationsSettings,
    *,
    lines: list[dict[str, Any]],
) -> None:
    user = new_user()
    await publish_event(test_broker, user)
    await smtp_sink.wait_for(user.email, within=patience(settings))  # the contact is known: the order would go out
    data = {
        "order_id": str(uuid.uuid4()),
        "user_id": str(user.user_id),
        "items": lines,
        "total": sum(line["quantity"] * line["unit_price"] for line in lines),
        "currency": "EUR",
    }
    message_id, body = raw_envelope("OrderPlaced", "orders", data)
    await publish_raw(test_broker, "orders.OrderPlaced", body, message_id=message_id)

    dead = await take_dead_letters(test_broker, {message_id}, within=patience(settings))
    assert dead[message_id][REASON_HEADER].startswith("invalid OrderPlaced v1 data: items")
    assert dead[message_id][ATTEMPT_HEADER] == 0
    assert [row["kind"] for row in await notification_rows(database, user.user_id)] == ["welcome"]
