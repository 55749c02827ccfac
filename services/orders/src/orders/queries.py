"""The hot reads, served straight from the tables: no ORM, no session, no transaction.

A GET by id needs none of what the unit of work gives a write (identity map, change tracking,
a transaction to commit or roll back); it costs one round trip here, and the rows become the
response model directly. Writes, and reads that lock, go through the repositories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastmicro.db import driver_connection
from orders.models import OrderId, UserId
from orders.schemas import OrderOut

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# One statement for the order and its items, in their order (an order has at least one item).
_OWNED = """
SELECT o.id, o.user_id, o.status, o.currency, o.total, o.created_at, o.updated_at,
       i.sku, i.quantity, i.unit_price, i.line_total
FROM orders AS o JOIN order_items AS i ON i.order_id = o.id
WHERE o.id = $1 AND o.user_id = $2
ORDER BY i.position
"""


class OrderQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def owned(self, order_id: OrderId, user_id: UserId) -> OrderOut | None:
        """`user_id`'s order `order_id` as the API shows it; None when absent or not theirs."""
        async with driver_connection(self._engine) as connection:
            rows = await connection.fetch(_OWNED, order_id, user_id)
        if not rows:
            return None
        order = rows[0]
        return OrderOut.model_validate(
            {
                "id": order["id"],
                "user_id": order["user_id"],
                "status": order["status"],
                "items": [
                    {
                        "sku": row["sku"],
                        "quantity": row["quantity"],
                        "unit_price": row["unit_price"],
                        "line_total": row["line_total"],
                    }
                    for row in rows
                ],
                "total": order["total"],
                "currency": order["currency"],
                "created_at": order["created_at"],
                "updated_at": order["updated_at"],
            }
        )
