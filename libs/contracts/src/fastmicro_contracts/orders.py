"""Events the orders service publishes (routing keys `orders.<Type>`).

The bounds are the producer's own (its API's, which it takes from here): a consumer refuses, at
parsing, what its producer could never have sent.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from fastmicro.events import DomainEvent, event
from fastmicro.fields import storable

SKU_MAX_LENGTH = 64
MAX_QUANTITY = 10_000
MAX_UNIT_PRICE = 10_000_000_000  # minor units: 100 million in a two-decimal currency
MAX_ITEMS = 100

Sku = Annotated[str, StringConstraints(min_length=1, max_length=SKU_MAX_LENGTH), AfterValidator(storable)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class OrderEvent(DomainEvent):
    source: ClassVar[str] = "orders"

    order_id: UUID
    user_id: UUID


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
    unit_price: Annotated[int, Field(ge=0, le=MAX_UNIT_PRICE)]


@event
class OrderPlaced(OrderEvent):
    type: ClassVar[str] = "OrderPlaced"

    items: Annotated[tuple[OrderLine, ...], Field(min_length=1, max_length=MAX_ITEMS)]
    total: Annotated[int, Field(ge=0, le=MAX_ITEMS * MAX_QUANTITY * MAX_UNIT_PRICE)]
    currency: Currency


CancelReason = Literal["requested", "user_deleted"]


@event
class OrderCancelled(OrderEvent):
    type: ClassVar[str] = "OrderCancelled"

    reason: CancelReason
