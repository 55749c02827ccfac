"""The handlers as the consumer runs them (inbox, one transaction, the retry decision), with no broker.

Use cases read as events in, rows and outcomes out: `EventDelivery` runs the consumer's own code
path against the session's database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro import context
from fastmicro.db import create_session_factory
from fastmicro.testing import EventDelivery
from fastmicro_contracts.users import UserDeleted, UserUpdated
from notifications.errors import ContactNotKnownYet
from notifications.handlers import SUBSCRIPTIONS, on_user_created
from notifications.uow import NotificationsUnitOfWork

from .helpers import contact_row, new_user, notification_rows, order_placed, unique_email

Handler = Callable[[Any, NotificationsUnitOfWork], Awaitable[None]]


@pytest.fixture
def delivery(database: AsyncEngine) -> EventDelivery[NotificationsUnitOfWork]:
    sessions = create_session_factory(database)
    return EventDelivery(SUBSCRIPTIONS, lambda: NotificationsUnitOfWork(sessions), retry_delays=[1, 5])


async def handle(engine: AsyncEngine, handler: Handler, event: Any, event_id: uuid.UUID) -> None:
    """A handler alone, past the inbox: one transaction, the event's id in context, as the consumer sets it."""
    token = context.causation_id.set(event_id)
    try:
        async with NotificationsUnitOfWork(create_session_factory(engine)) as uow:
            await handler(event, uow)
            await uow.commit()
    finally:
        context.causation_id.reset(token)


async def test_a_new_user_gets_one_pending_welcome_and_a_redelivery_changes_nothing(
    delivery: EventDelivery[NotificationsUnitOfWork], database: AsyncEngine
) -> None:
    user = new_user()
    created = await delivery.deliver(user)
    assert created.kind == "handled"
    assert created.envelope is not None
    assert (await delivery.deliver(created.envelope)).kind == "duplicate"

    [row] = await notification_rows(database, user.user_id)
    assert (row["kind"], row["status"], row["recipient"]) == ("welcome", "pending", user.email)
    assert row["event_id"] == created.envelope.id


async def test_an_order_ahead_of_its_user_is_retried_then_notified_once_the_user_is_known(
    delivery: EventDelivery[NotificationsUnitOfWork], database: AsyncEngine
) -> None:
    user = new_user()
    early = await delivery.deliver(order_placed(user.user_id))
    assert (early.kind, early.attempt, early.delay) == ("retried", 1, 1)
    assert isinstance(early.error, ContactNotKnownYet)
    assert await notification_rows(database, user.user_id) == []

    assert (await delivery.deliver(user)).kind == "handled"
    assert early.envelope is not None
    retried = await delivery.deliver(early.envelope, attempt=early.attempt)  # back from the delay queue

    assert retried.kind == "handled"
    rows = await notification_rows(database, user.user_id)
    assert sorted(row["kind"] for row in rows) == ["order_placed", "welcome"]


async def test_an_order_for_a_user_who_never_arrives_is_dead_lettered_after_the_last_retry(
    delivery: EventDelivery[NotificationsUnitOfWork],
) -> None:
    placed = await delivery.deliver(order_placed(uuid.uuid4()))
    assert placed.envelope is not None
    last = await delivery.deliver(placed.envelope, attempt=2)
    assert (last.kind, last.reason) == ("dead_lettered", "attempts exhausted")


async def test_a_user_deleted_before_being_seen_leaves_a_tombstone_that_later_events_leave_alone(
    delivery: EventDelivery[NotificationsUnitOfWork], database: AsyncEngine
) -> None:
    user = new_user()
    assert (await delivery.deliver(UserDeleted(user_id=user.user_id))).kind == "handled"
    tombstone = await contact_row(database, user.user_id)
    assert tombstone is not None
    assert (tombstone["email"], tombstone["name"]) == (None, None)
    assert tombstone["erased_at"] is not None

    # Neither resurrects the contact; an order for a tombstone is not waited for: it is handled, as nothing.
    assert (await delivery.deliver(user)).kind == "handled"
    assert (await delivery.deliver(order_placed(user.user_id))).kind == "handled"
    assert await notification_rows(database, user.user_id) == []
    assert await contact_row(database, user.user_id) == tombstone


async def test_an_event_makes_one_notification_even_past_the_inbox(database: AsyncEngine) -> None:
    user, event_id = new_user(), uuid.uuid4()
    await handle(database, on_user_created, user, event_id)
    await handle(database, on_user_created, user, event_id)
    [row] = await notification_rows(database, user.user_id)
    assert (row["event_id"], row["kind"], row["recipient"]) == (event_id, "welcome", user.email)


async def assert_erased(database: AsyncEngine, user_id: uuid.UUID) -> None:
    contact = await contact_row(database, user_id)
    assert contact is not None
    assert (contact["email"], contact["name"]) == (None, None)
    assert contact["erased_at"] is not None
    for row in await notification_rows(database, user_id):
        assert (row["recipient"], row["body"]) == ("", "")
        assert row["status"] != "pending"


async def test_an_erasure_racing_a_creation_always_wins(
    delivery: EventDelivery[NotificationsUnitOfWork], database: AsyncEngine
) -> None:
    """Whichever commits first, the contact ends erased and nothing is left to send to it."""
    for _ in range(20):
        user = new_user()
        outcomes = await asyncio.gather(delivery.deliver(user), delivery.deliver(UserDeleted(user_id=user.user_id)))
        assert [outcome.kind for outcome in outcomes] == ["handled", "handled"]
        await assert_erased(database, user.user_id)


async def test_an_erasure_racing_updates_and_orders_always_wins(
    delivery: EventDelivery[NotificationsUnitOfWork], database: AsyncEngine
) -> None:
    for _ in range(20):
        user = new_user()
        await delivery.deliver(user)
        changed = UserUpdated(user_id=user.user_id, email=unique_email(), name="Changed")
        outcomes = await asyncio.gather(
            delivery.deliver(changed),
            delivery.deliver(order_placed(user.user_id)),
            delivery.deliver(UserDeleted(user_id=user.user_id)),
        )
        assert [outcome.kind for outcome in outcomes] == ["handled"] * 3
        await assert_erased(database, user.user_id)
