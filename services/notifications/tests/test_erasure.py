"""UserDeleted: the contact is erased for good, whatever arrives after it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.messaging import Broker
from fastmicro.testing import publish_event
from fastmicro_contracts.orders import OrderCancelled
from fastmicro_contracts.users import UserDeleted, UserUpdated
from notifications.settings import NotificationsSettings

from .conftest import ServiceFactory
from .helpers import (
    Inbox,
    SmtpSink,
    contact_row,
    eventually_async,
    free_port,
    new_user,
    notification_rows,
    order_placed,
    unique_email,
    wait_handled,
)

Inboxes = Callable[[uuid.UUID], Inbox]


async def test_a_deleted_user_is_erased_and_stays_erased(
    test_broker: Broker, smtp_sink: SmtpSink, inbox: Inboxes, unaware_inbox: Inboxes, database: AsyncEngine
) -> None:
    user = new_user(name="Ada Lovelace")
    await publish_event(test_broker, user)
    await inbox(user.user_id).wait_sent(1)
    await publish_event(test_broker, order_placed(user.user_id))
    await inbox(user.user_id).wait_sent(2)

    deleted = await publish_event(test_broker, UserDeleted(user_id=user.user_id))
    await wait_handled(database, deleted.id)

    items = await unaware_inbox(user.user_id).items()
    assert [(item["kind"], item["recipient"], item["status"]) for item in items] == [
        ("order_placed", "", "sent"),
        ("welcome", "", "sent"),
    ]
    contact = await contact_row(database, user.user_id)
    assert contact is not None
    assert (contact["email"], contact["name"]) == (None, None)
    assert contact["erased_at"] is not None
    rows = await notification_rows(database, user.user_id)
    assert all(row["body"] == "" and row["recipient"] == "" for row in rows)
    assert all("Ada" not in row["subject"] and user.email not in row["subject"] for row in rows)

    # Nothing that arrives later writes to them, or brings their details back.
    new_email = unique_email("resurrected")
    late = [
        await publish_event(test_broker, order_placed(user.user_id)),
        await publish_event(
            test_broker, OrderCancelled(order_id=uuid.uuid4(), user_id=user.user_id, reason="requested")
        ),
        await publish_event(test_broker, UserUpdated(user_id=user.user_id, email=new_email, name="Back Again")),
        await publish_event(test_broker, user),  # a late copy of the UserCreated, under a new id
    ]
    for envelope in late:
        await wait_handled(database, envelope.id)
    await asyncio.sleep(0.5)
    assert len(await unaware_inbox(user.user_id).items()) == 2
    assert await contact_row(database, user.user_id) == contact
    assert smtp_sink.to(new_email) == []
    assert len(smtp_sink.to(user.email)) == 2


async def test_deletion_fails_the_notifications_not_sent_yet(own_service: ServiceFactory) -> None:
    """Mail that could not go out before the deletion never goes out, even once the server is up."""
    port = free_port()
    async with own_service(smtp_port=port, send_retry_delays=[0.2] * 50) as service:
        user = new_user()
        await publish_event(service.broker, user)

        async def tried_twice() -> bool | None:
            rows = await notification_rows(service.database, user.user_id)
            return True if rows and rows[0]["attempts"] >= 2 else None

        await eventually_async(tried_twice)

        deleted = await publish_event(service.broker, UserDeleted(user_id=user.user_id))
        await wait_handled(service.database, deleted.id)
        [row] = await notification_rows(service.database, user.user_id)
        assert (row["status"], row["last_error"], row["recipient"], row["body"]) == ("failed", "contact erased", "", "")

        sink = await SmtpSink(port).start()
        try:
            await asyncio.sleep(1)
            assert sink.collector.received == []
        finally:
            await sink.stop()


async def test_a_deleted_users_token_gets_401(
    client: httpx.AsyncClient,
    test_broker: Broker,
    inbox: Inboxes,
    database: AsyncEngine,
    settings: NotificationsSettings,
) -> None:
    """Once UserDeleted is handled, within one revocation reload; other users are not affected."""
    user, other = new_user(), new_user()
    for created in (user, other):
        await publish_event(test_broker, created)
    mine, theirs = inbox(user.user_id), inbox(other.user_id)
    await mine.wait_sent(1)
    assert (await client.get("/notifications", headers=mine.headers)).status_code == 200

    deleted = await publish_event(test_broker, UserDeleted(user_id=user.user_id))
    await wait_handled(database, deleted.id)
    # The API reloads its revocations every REVOCATION_POLL_SECONDS: one reload past the commit at most.
    async with asyncio.timeout(settings.revocation_poll_seconds * 2 + 5):
        while (response := await client.get("/notifications", headers=mine.headers)).status_code != 401:
            await asyncio.sleep(settings.revocation_poll_seconds / 4)

    assert response.json()["code"] == "invalid_token"
    assert len(await theirs.wait_sent(1)) == 1
