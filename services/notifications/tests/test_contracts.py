"""notifications accepts what its producers send: their committed example of every version it reads.

That is every version it subscribes to, and every older one upcast to it (OrderPlaced v1 and v2).
Each example (libs/contracts/schemas/) goes through the consumer's own code path (`EventDelivery`:
parsing, matching by type and version, the upcaster, the inbox and the handler in one transaction)
against the real database. The examples tell one story (a user registers, changes, orders, cancels,
leaves): they are delivered in that order (`STORY`), the deletion last, since it erases the contact the others need.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.asyncapi import message_name
from fastmicro.db import create_session_factory
from fastmicro.testing import EventDelivery, committed_example
from fastmicro_contracts.orders import OrderPlaced, OrderPlacedV1
from notifications.handlers import SUBSCRIPTIONS
from notifications.uow import NotificationsUnitOfWork

#: The order the examples' story happens in; a type not here fails the test until it finds its place.
STORY = ("UserCreated", "UserUpdated", "OrderPlaced", "OrderCancelled", "UserDeleted")


async def test_every_readable_version_s_committed_example_is_handled(database: AsyncEngine) -> None:
    sessions = create_session_factory(database)
    delivery = EventDelivery(SUBSCRIPTIONS, lambda: NotificationsUnitOfWork(sessions))
    readable = delivery.handling.readable
    assert {OrderPlacedV1, OrderPlaced} <= set(readable)
    for event in sorted(readable, key=lambda e: (STORY.index(e.type), e.version)):
        outcome = await delivery.deliver(committed_example(event))
        assert outcome.kind == "handled", (message_name(event), outcome.reason, repr(outcome.error))
