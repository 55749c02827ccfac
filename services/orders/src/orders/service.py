"""The orders use cases: the only place their rules run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import OrderCancelled, OrderLine, OrderPlaced
from orders.errors import AccountDeleted, OrderNotFound
from orders.models import Order, OrderId

if TYPE_CHECKING:
    from fastmicro.idempotency import IdempotentRequest
    from fastmicro.security import Principal
    from orders.schemas import OrderCreate, OrderOut
    from orders.uow import OrdersUnitOfWork


class OrderService:
    def __init__(self, uow: OrdersUnitOfWork) -> None:
        self._uow = uow

    async def place(self, actor: Principal, data: OrderCreate, key: IdempotentRequest | None = None) -> Order:
        """Place an order; under a key, once (a retry gets the first answer: fastmicro.idempotency)."""
        async with self._uow.once(key) as uow:
            # Held to commit: a UserDeleted being handled now waits for this order, and then cancels it.
            if await uow.deleted_users.lock_for_placing(actor.user_id):
                raise AccountDeleted()
            order = Order.place(user_id=actor.user_id, lines=data.items, currency=data.currency)
            await uow.orders.create(order)
            uow.emit(
                OrderPlaced(
                    order_id=order.id,
                    user_id=order.user_id,
                    items=tuple(
                        OrderLine(sku=item.sku, quantity=item.quantity, unit_price=item.unit_price)
                        for item in order.items
                    ),
                    total=Money.of_minor_units(order.total, order.currency),
                )
            )
            await uow.commit(answer=order)
        return order

    async def get(self, actor: Principal, order_id: OrderId) -> OrderOut:
        """The actor's order as the API shows it; someone else's is as absent as one that never existed."""
        order = await self._uow.queries.owned(order_id, actor.user_id)
        if order is None:
            raise OrderNotFound()
        return order

    async def list(self, actor: Principal, *, limit: int, offset: int) -> tuple[Sequence[Order], int]:
        async with self._uow as uow:
            return await uow.orders.list_page(actor.user_id, limit=limit, offset=offset)

    async def cancel(self, actor: Principal, order_id: OrderId, key: IdempotentRequest | None = None) -> Order:
        async with self._uow.once(key) as uow:
            order = await _owned(uow, actor, order_id, for_update=True)
            order.cancel("requested")
            await uow.orders.update(order)
            uow.emit(OrderCancelled(order_id=order.id, user_id=order.user_id, reason="requested"))
            await uow.commit(answer=order)
        return order


async def _owned(uow: OrdersUnitOfWork, actor: Principal, order_id: OrderId, *, for_update: bool = False) -> Order:
    """The actor's order; someone else's is as absent as one that never existed."""
    order = await uow.orders.get_owned(order_id, actor.user_id, for_update=for_update)
    if order is None:
        raise OrderNotFound()
    return order
