from __future__ import annotations

from typing import TYPE_CHECKING, Self

from fastmicro.uow import OutboxUnitOfWork
from orders.queries import OrderQueries
from orders.repository import DeletedUserRepository, OrderRepository

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class OrdersUnitOfWork(OutboxUnitOfWork):
    """The orders' repositories in one transaction; `queries` reads outside any (no `async with` needed)."""

    orders: OrderRepository
    deleted_users: DeletedUserRepository

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(session_factory)
        self.queries = OrderQueries(self.engine)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.orders = OrderRepository(self.session)
        self.deleted_users = DeletedUserRepository(self.session)
        return self
