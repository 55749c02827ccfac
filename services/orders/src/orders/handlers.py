"""Reactions to other services' events. Handlers never commit: the consumer runtime does, with the inbox row."""

from __future__ import annotations

from typing import Any

import structlog

from fastmicro.consumer import Subscription
from fastmicro.revocation import revoke_subject
from fastmicro_contracts.orders import OrderCancelled
from fastmicro_contracts.users import UserDeleted
from orders.uow import OrdersUnitOfWork

log = structlog.get_logger(__name__)


async def on_user_deleted(event: UserDeleted, uow: OrdersUnitOfWork) -> None:
    """The user places no more orders, and their placed orders are cancelled (reason `user_deleted`)."""
    # Exclusive: waits for orders of this user being placed right now, and holds off new ones.
    await uow.deleted_users.lock_and_mark_deleted(event.user_id)
    await revoke_subject(uow.session, event.user_id)  # their tokens get 401 here from now on
    orders = await uow.orders.placed_orders_of(event.user_id)
    for order in orders:
        order.cancel("user_deleted")
        uow.emit(OrderCancelled(order_id=order.id, user_id=order.user_id, reason="user_deleted"))
    log.info("user_orders_cancelled", user_id=str(event.user_id), cancelled=len(orders))


SUBSCRIPTIONS: list[Subscription[Any, OrdersUnitOfWork]] = [
    Subscription(UserDeleted, on_user_deleted),
]
