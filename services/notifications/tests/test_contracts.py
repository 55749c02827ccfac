"""notifications accepts what its producers send: their committed example of every version it subscribes to.

Each example (libs/contracts/schemas/) goes through the consumer's own code path (`EventDelivery`:
parsing, matching by type and version, the inbox and the handler in one transaction) against the
real database. The examples tell one story (a user registers, changes, orders, cancels, leaves):
they are delivered in that order, the deletion last, since it erases the contact the others need.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.asyncapi import message_name
from fastmicro.db import create_session_factory
from fastmicro.testing import EventDelivery, committed_example
from notifications.handlers import SUBSCRIPTIONS
from notifications.uow import NotificationsUnitOfWork


async def test_every_subscribed_version_s_committed_example_is_handled(database: AsyncEngine) -> None:
    sessions = create_session_factory(database)
    delivery = EventDelivery(SUBSCRIPTIONS, lambda: NotificationsUnitOfWork(sessions))
    for subscription in sorted(SUBSCRIPTIONS, key=lambda s: s.event.type == "UserDeleted"):
        outcome = await delivery.deliver(committed_example(subscription.event))
        assert outcome.kind == "handled", (message_name(subscription.event), outcome.reason, repr(outcome.error))
