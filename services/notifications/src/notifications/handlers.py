"""Reactions to the users' and orders' events: keep the contacts, write the notifications to send.

A handler runs inside the consumer's transaction (with the inbox row that makes it run once
per event) and never commits. It only writes `pending` notifications; the `EmailSender`
delivers them after the commit, so no email goes out for a transaction that rolled back.

The handlers of one user's events serialise on that user's contact row (user events lock it,
order events share-lock it), so an erasure always wins: whatever commits after it sees the
tombstone, and whatever committed before it is erased with the rest.
"""

from __future__ import annotations

from typing import Any

import structlog

from fastmicro import context
from fastmicro.consumer import Subscription
from fastmicro.db import utcnow
from fastmicro.revocation import revoke_subject
from fastmicro_contracts.orders import OrderCancelled, OrderPlaced
from fastmicro_contracts.users import UserCreated, UserDeleted, UserUpdated
from notifications import messages
from notifications.errors import ContactNotKnownYet
from notifications.models import Contact, Notification, NotificationKind, UserId
from notifications.uow import NotificationsUnitOfWork

log = structlog.get_logger(__name__)


async def on_user_created(event: UserCreated, uow: NotificationsUnitOfWork) -> None:
    contact = await uow.contacts.lock(event.user_id)
    contact.introduce(email=event.email, name=event.name, now=utcnow())
    await _notify(uow, contact, "welcome", messages.welcome(contact.name))


async def on_user_updated(event: UserUpdated, uow: NotificationsUnitOfWork) -> None:
    contact = await uow.contacts.lock(event.user_id)
    contact.change(email=event.email, name=event.name, now=utcnow())
    await _notify(uow, contact, "account_updated", messages.account_updated(contact.name, event.email))


async def on_user_deleted(event: UserDeleted, uow: NotificationsUnitOfWork) -> None:
    contact = await uow.contacts.lock(event.user_id)  # a tombstone if the user was never seen
    contact.erase(utcnow())
    erased = await uow.notifications.erase_recipient(event.user_id)
    await revoke_subject(uow.session, event.user_id)  # their tokens get 401 here from now on
    log.info("contact_erased", user_id=str(event.user_id), notifications=erased)


async def on_order_placed(event: OrderPlaced, uow: NotificationsUnitOfWork) -> None:
    contact = await _known_contact(uow, event.user_id)
    await _notify(
        uow,
        contact,
        "order_placed",
        messages.order_placed(contact.name, event.order_id, event.items, event.total),
    )


async def on_order_cancelled(event: OrderCancelled, uow: NotificationsUnitOfWork) -> None:
    contact = await _known_contact(uow, event.user_id)
    await _notify(uow, contact, "order_cancelled", messages.order_cancelled(contact.name, event.order_id, event.reason))


SUBSCRIPTIONS: list[Subscription[Any, NotificationsUnitOfWork]] = [
    Subscription(UserCreated, on_user_created),
    Subscription(UserUpdated, on_user_updated),
    Subscription(UserDeleted, on_user_deleted),
    Subscription(OrderPlaced, on_order_placed),
    Subscription(OrderCancelled, on_order_cancelled),
]


async def _known_contact(uow: NotificationsUnitOfWork, user_id: UserId) -> Contact:
    """The contact an order event needs; it may be ahead of its UserCreated, so wait for it."""
    contact = await uow.contacts.get_shared(user_id)
    if contact is None:
        raise ContactNotKnownYet(user_id)
    return contact


async def _notify(
    uow: NotificationsUnitOfWork, contact: Contact, kind: NotificationKind, message: messages.Message
) -> None:
    """Write the pending notification for the event being handled, unless the contact is erased."""
    recipient = contact.address
    if recipient is None:
        log.info("notification_skipped", reason="contact erased", kind=kind, user_id=str(contact.user_id))
        return
    event_id = context.causation_id.get()  # the consumer sets it to the id of the message in hand
    if event_id is None:
        raise RuntimeError("a notification is written only while an event is being handled")
    notification = Notification.pending(
        kind=kind,
        user_id=contact.user_id,
        recipient=recipient,
        subject=message.subject,
        body=message.body,
        event_id=event_id,
        now=utcnow(),
    )
    if await uow.notifications.add_once(notification):
        log.info("notification_written", kind=kind, notification_id=str(notification.id))
