"""The Order aggregate (an order and its lines) with its rules, and the users known to be deleted."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fastmicro.db import Base, Timestamps, UUIDPrimaryKey, utcnow
from fastmicro_contracts.orders import CancelReason
from orders.errors import OrderNotCancellable

OrderId = uuid.UUID
UserId = uuid.UUID
OrderStatus = Literal["placed", "cancelled"]


class Line(Protocol):
    """What an order is placed from: a line as the client asked for it (no totals)."""

    @property
    def sku(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_price(self) -> int: ...


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[OrderId] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    line_total: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        # Also the index the items of an order are loaded by (order_id leads).
        UniqueConstraint("order_id", "position"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        CheckConstraint("line_total = quantity * unit_price", name="line_total"),
    )


class Order(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "orders"

    user_id: Mapped[UserId] = mapped_column()  # indexed by ix_orders_user_id_created_at below
    status: Mapped[OrderStatus] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    cancel_reason: Mapped[CancelReason | None] = mapped_column(String(32))
    # lazy="raise": the items are loaded with the order by the query that needs them, or an
    # access fails loudly; nothing can fall into one query per order.
    items: Mapped[list[OrderItem]] = relationship(
        order_by=OrderItem.position, lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint("status IN ('placed', 'cancelled')", name="status"),
        CheckConstraint(
            "(status = 'placed' AND cancel_reason IS NULL)"
            " OR (status = 'cancelled' AND cancel_reason IN ('requested', 'user_deleted'))",
            name="cancel_reason",
        ),
        CheckConstraint("total >= 0", name="total_not_negative"),
    )

    @classmethod
    def place(cls, *, user_id: UserId, lines: Sequence[Line], currency: str) -> Order:
        """A new placed order. Line totals and the total are computed here, never taken from a client."""
        items = [
            OrderItem(
                id=uuid.uuid4(),
                position=position,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                line_total=line.quantity * line.unit_price,
            )
            for position, line in enumerate(lines)
        ]
        now = utcnow()
        return cls(
            id=uuid.uuid4(),
            user_id=user_id,
            status="placed",
            currency=currency,
            total=sum(item.line_total for item in items),
            cancel_reason=None,
            items=items,
            created_at=now,
            updated_at=now,
        )

    def cancel(self, reason: CancelReason) -> None:
        if self.status == "cancelled":
            raise OrderNotCancellable()
        self.status = "cancelled"
        self.cancel_reason = reason


# The list query: one user's orders, newest first (ties broken by id), read straight off the index.
Index("ix_orders_user_id_created_at", Order.user_id, Order.created_at.desc(), Order.id.desc())


class DeletedUser(Base):
    """A user whose UserDeleted arrived: they place no more orders."""

    __tablename__ = "deleted_users"

    user_id: Mapped[UserId] = mapped_column(primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
