"""What one orders process holds (its Runtime: unit of work, background roles) and what routes take from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fastmicro.runtime import BackgroundRole, Runtime
from orders.handlers import SUBSCRIPTIONS
from orders.service import OrderService
from orders.settings import OrdersSettings
from orders.uow import OrdersUnitOfWork


class Orders(Runtime[OrdersSettings]):
    def roles(self) -> list[BackgroundRole]:
        """The outbox relay, the consumer of what orders reacts to (UserDeleted), and both tables' retention."""
        return [
            self.outbox_relay(),
            self.consumer(SUBSCRIPTIONS, self.uow),
            self.retention_purger(outbox=True, inbox=True, idempotency=True),
        ]

    def uow(self) -> OrdersUnitOfWork:
        return OrdersUnitOfWork(self.session_factory)


OrdersDep = Annotated[Orders, Depends(Orders.current)]


async def get_order_service(orders: OrdersDep) -> OrderService:
    return OrderService(orders.uow())


OrderServiceDep = Annotated[OrderService, Depends(get_order_service)]
