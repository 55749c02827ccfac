from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Uuid, bindparam, func, insert, select, text
from sqlalchemy.orm import joinedload, selectinload

from fastmicro.db import utcnow
from fastmicro.repository import SQLAlchemyRepository, column_values, table_of
from orders.models import Order, OrderId, OrderItem, UserId

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


#: Built once: placing an order is the hot write, and the unit-of-work flush cost more than the SQL.
_INSERT_ORDER = insert(table_of(Order))
_INSERT_ITEMS = insert(table_of(OrderItem))


class OrderRepository(SQLAlchemyRepository[Order, OrderId]):
    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session, Order)

    async def create(self, order: Order, /) -> Order:
        """Insert a new order and its items: two statements (the items in one), no flush.

        The order is not added to the session: nothing in the transaction that places an order
        reads it back, and every value it carries was set by `Order.place`.
        """
        await self.session.execute(_INSERT_ORDER, column_values(order))
        items = [column_values(item) | {"order_id": order.id} for item in order.items]  # the relationship's key
        if items:
            await self.session.execute(_INSERT_ITEMS, items)
        return order

    async def get_owned(self, order_id: OrderId, user_id: UserId, *, for_update: bool = False) -> Order | None:
        """`user_id`'s order `order_id` with its items, in one statement; None when absent or not theirs."""
        stmt = (
            select(Order)
            .where(Order.id == order_id, Order.user_id == user_id)
            .options(joinedload(Order.items))  # one order: a join costs no second round trip
        )
        if for_update:
            stmt = stmt.with_for_update(of=Order)
        return (await self.session.scalars(stmt)).unique().one_or_none()

    async def list_page(self, user_id: UserId, *, limit: int, offset: int) -> tuple[Sequence[Order], int]:
        """One page of `user_id`'s orders, newest first, with their items; and how many they have in all.

        Two statements: the page carries the total (a window count), then one query loads the
        items of the whole page. A third (a plain count) runs only for a page past the end.
        """
        stmt = (
            select(Order, func.count().over().label("total"))
            .where(Order.user_id == user_id)
            .order_by(Order.created_at.desc(), Order.id.desc())
            .limit(limit)
            .offset(offset)
            .options(selectinload(Order.items))
        )
        rows = (await self.session.execute(stmt)).all()
        if rows:
            return [order for order, _ in rows], rows[0].total
        if offset == 0:
            return [], 0
        total = await self.session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
        return [], total or 0

    async def placed_orders_of(self, user_id: UserId) -> Sequence[Order]:
        """`user_id`'s orders still placed, locked for update (without their items)."""
        stmt = (
            select(Order)
            .where(Order.user_id == user_id, Order.status == "placed")
            .order_by(Order.created_at, Order.id)
            .with_for_update()
        )
        return (await self.session.scalars(stmt)).all()


# The per-user advisory lock that orders placing against deleting. Its key is
# hashtextextended(<user id as text>, 0), here and in lock_user_for_placing() (migration 0001).
_LOCK_FOR_PLACING = text("SELECT lock_user_for_placing(:user_id)").bindparams(bindparam("user_id", type_=Uuid))
_LOCK_AND_MARK_DELETED = text(
    """
    INSERT INTO deleted_users (user_id, deleted_at)
    SELECT CAST(:user_id AS uuid), CAST(:deleted_at AS timestamptz)
    FROM (SELECT pg_advisory_xact_lock(hashtextextended(CAST(CAST(:user_id AS uuid) AS text), 0))) AS locked
    ON CONFLICT (user_id) DO NOTHING
    """
).bindparams(bindparam("user_id", type_=Uuid))


class DeletedUserRepository:
    """Users whose UserDeleted arrived, behind the per-user lock that keeps orders from slipping in.

    Placing takes the lock shared (a user's orders are placed concurrently); recording a deletion
    takes it exclusively, so it waits for the orders being placed to commit, and placing waits
    for the deletion to commit and then sees it. Both are transaction locks: commit releases them.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_for_placing(self, user_id: UserId) -> bool:
        """Take `user_id`'s lock shared, then answer whether the user is deleted. One round trip.

        The check runs in a database function so that it reads a snapshot taken after the lock
        was granted: a deletion that committed while this waited is seen.
        """
        return bool(await self.session.scalar(_LOCK_FOR_PLACING, {"user_id": user_id}))

    async def lock_and_mark_deleted(self, user_id: UserId) -> None:
        """Take `user_id`'s lock exclusively and record the deletion (once, however often it arrives).

        Statements after this one see every order placed before the lock was granted.
        """
        await self.session.execute(_LOCK_AND_MARK_DELETED, {"user_id": user_id, "deleted_at": utcnow()})
