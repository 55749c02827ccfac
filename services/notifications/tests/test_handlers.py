"""The handlers straight against the database: idempotent on the event id, and safe when they race."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro import context
from fastmicro.db import create_session_factory
from fastmicro_contracts.users import UserDeleted, UserUpdated
from notifications.handlers import on_order_placed, on_user_created, on_user_deleted, on_user_updated
from notifications.uow import NotificationsUnitOfWork

from .helpers import contact_row, new_user, notification_rows, order_placed, unique_email

Handler = Callable[[Any, NotificationsUnitOfWork], Awaitable[None]]


async def handle(engine: AsyncEngine, handler: Handler, event: Any, event_id: uuid.UUID) -> None:
    """What the consumer does around a handler (without the inbox): one transaction, the event's id in context."""
    token = context.causation_id.set(event_id)
    try:
        async with NotificationsUnitOfWork(create_session_factory(engine)) as uow:
            await handler(event, uow)
            await uow.commit()
    finally:
        context.causation_id.reset(token)


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


async def test_an_erasure_racing_a_creation_always_wins(database: AsyncEngine) -> None:
    """Whichever commits first, the contact ends erased and nothing is left to send to it."""
    for _ in range(20):
        user = new_user()
        await asyncio.gather(
            handle(database, on_user_created, user, uuid.uuid4()),
            handle(database, on_user_deleted, UserDeleted(user_id=user.user_id), uuid.uuid4()),
        )
        await assert_erased(database, user.user_id)


async def test_an_erasure_racing_updates_and_orders_always_wins(database: AsyncEngine) -> None:
    for _ in range(20):
        user = new_user()
        await handle(database, on_user_created, user, uuid.uuid4())
        changed = UserUpdated(user_id=user.user_id, email=unique_email(), name="Changed")
        await asyncio.gather(
            handle(database, on_user_updated, changed, uuid.uuid4()),
            handle(database, on_order_placed, order_placed(user.user_id), uuid.uuid4()),
            handle(database, on_user_deleted, UserDeleted(user_id=user.user_id), uuid.uuid4()),
        )
        await assert_erased(database, user.user_id)
