"""Events in, email out: through real RabbitMQ, PostgreSQL and an SMTP server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.messaging import Broker
from fastmicro.testing import publish_envelope, publish_event
from fastmicro_contracts.orders import OrderCancelled
from fastmicro_contracts.users import UserUpdated
from notifications.settings import NotificationsSettings

from .conftest import ServiceFactory
from .helpers import (
    NOTIFICATION_FIELDS,
    Inbox,
    SmtpSink,
    new_user,
    notification_rows,
    order_placed,
    parse_timestamp,
    unique_email,
)

Inboxes = Callable[[uuid.UUID], Inbox]


async def test_a_new_user_is_sent_a_welcome_email(
    client: httpx.AsyncClient,
    test_broker: Broker,
    smtp_sink: SmtpSink,
    inbox: Inboxes,
    settings: NotificationsSettings,
) -> None:
    user = new_user(name="Ada Lovelace")
    envelope = await publish_event(test_broker, user)

    [mail] = await smtp_sink.wait_for(user.email)
    [item] = await inbox(user.user_id).wait_sent(1)

    assert set(item) == NOTIFICATION_FIELDS
    assert item["user_id"] == str(user.user_id)
    assert item["kind"] == "welcome"
    assert item["channel"] == "email"
    assert item["recipient"] == user.email
    assert item["subject"] == "Welcome to fastmicro"
    assert item["status"] == "sent"
    assert item["event_id"] == str(envelope.id)
    assert parse_timestamp(item["created_at"]) <= parse_timestamp(item["sent_at"])

    assert mail.rcpt_tos == [user.email]
    assert mail.message["To"] == user.email
    assert mail.message["From"] == settings.mail_from
    assert mail.message["Subject"] == "Welcome to fastmicro"
    assert mail.message["Message-ID"] == f"<{item['id']}@notifications.fastmicro>"
    assert mail.message["Date"]
    assert "Hello Ada Lovelace," in mail.body


async def test_orders_placed_and_cancelled_are_mailed(
    client: httpx.AsyncClient, test_broker: Broker, smtp_sink: SmtpSink, inbox: Inboxes
) -> None:
    user = new_user(name="Grace")
    await publish_event(test_broker, user)
    await inbox(user.user_id).wait_sent(1)

    placed = order_placed(user.user_id, total=3099, currency="EUR")
    await publish_event(test_broker, placed)
    [_, placed_mail] = await smtp_sink.wait_for(user.email, count=2)
    short = placed.order_id.hex[:8]
    assert placed_mail.message["Subject"] == f"Your order {short} is placed"
    assert str(placed.order_id) in placed_mail.body
    assert "2 x SKU-1 at 12.50 EUR = 25.00 EUR" in placed_mail.body
    assert "1 x SKU-2 at 5.99 EUR = 5.99 EUR" in placed_mail.body
    assert "Total: 30.99 EUR" in placed_mail.body

    cancelled = OrderCancelled(order_id=placed.order_id, user_id=user.user_id, reason="requested")
    await publish_event(test_broker, cancelled)
    [*_, cancelled_mail] = await smtp_sink.wait_for(user.email, count=3)
    assert cancelled_mail.message["Subject"] == f"Your order {short} is cancelled"
    assert str(placed.order_id) in cancelled_mail.body
    assert "requested" in cancelled_mail.body

    items = await inbox(user.user_id).wait_sent(3)
    assert [item["kind"] for item in items] == ["order_cancelled", "order_placed", "welcome"]
    assert {item["recipient"] for item in items} == {user.email}


async def test_an_account_update_is_mailed_to_the_new_address(
    client: httpx.AsyncClient, test_broker: Broker, smtp_sink: SmtpSink, inbox: Inboxes
) -> None:
    user = new_user(name="Old Name")
    await publish_event(test_broker, user)
    await smtp_sink.wait_for(user.email)

    new_email = unique_email("moved")
    await publish_event(test_broker, UserUpdated(user_id=user.user_id, email=new_email, name="New Name"))
    [mail] = await smtp_sink.wait_for(new_email)
    assert mail.message["Subject"] == "Your fastmicro account was updated"
    assert "Hello New Name," in mail.body
    items = await inbox(user.user_id).wait_sent(2)
    assert [(item["kind"], item["recipient"]) for item in items] == [
        ("account_updated", new_email),
        ("welcome", user.email),
    ]

    # Later mail follows the contact to its new address.
    await publish_event(test_broker, order_placed(user.user_id))
    [_, order_mail] = await smtp_sink.wait_for(new_email, count=2)
    assert "Hello New Name," in order_mail.body
    assert len(smtp_sink.to(user.email)) == 1


async def test_an_event_delivered_twice_is_mailed_once(
    client: httpx.AsyncClient, test_broker: Broker, smtp_sink: SmtpSink, inbox: Inboxes, database: AsyncEngine
) -> None:
    user = new_user()
    envelope = await publish_event(test_broker, user)
    await publish_envelope(test_broker, envelope)
    await publish_envelope(test_broker, envelope)

    await smtp_sink.wait_for(user.email)
    await inbox(user.user_id).wait_sent(1)
    await asyncio.sleep(1)  # give the redeliveries every chance to make a second one
    assert len(smtp_sink.to(user.email)) == 1
    [row] = await notification_rows(database, user.user_id)
    assert (row["event_id"], row["attempts"]) == (envelope.id, 1)


async def test_a_commit_wakes_the_sender_without_waiting_for_its_poll(
    own_service: ServiceFactory, smtp_sink: SmtpSink
) -> None:
    async with own_service(smtp_port=smtp_sink.port, sender_poll_interval=60) as service:
        await asyncio.sleep(0.5)  # the sender has drained once and now waits for a NOTIFY (or a minute)
        user = new_user()
        await publish_event(service.broker, user)
        await smtp_sink.wait_for(user.email, within=5)
        await service.inbox(user.user_id).wait_sent(1, within=5)
