from __future__ import annotations

from typing import Self

from fastmicro.uow import UnitOfWork
from orders.repository import DeletedUserRepository, OrderRepository


class OrdersUnitOfWork(UnitOfWork):
    orders: OrderRepository
    deleted_users: DeletedUserRepository

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.orders = OrderRepository(self.session)
        self.deleted_users = DeletedUserRepository(self.session)
        return self
