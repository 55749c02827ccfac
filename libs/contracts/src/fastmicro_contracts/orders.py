"""Events the orders service publishes (routing keys `orders.<Type>`)."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from fastmicro.events import DomainEvent, event


class OrderEvent(DomainEvent):
    source: ClassVar[str] = "orders"

    order_id: UUID
    user_id: UUID


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    sku: str
    quantity: int
    unit_price: int


@event
class OrderPlaced(OrderEvent):
    type: ClassVar[str] = "OrderPlaced"

    items: tuple[OrderLine, ...]
    total: int
    currency: str


CancelReason = Literal["requested", "user_deleted"]


@event
class OrderCancelled(OrderEvent):
    type: ClassVar[str] = "OrderCancelled"

    reason: CancelReason
