"""Events the orders service publishes (routing keys `orders.<Type>`).

The bounds are the producer's own (its API's, which it takes from here): a consumer refuses, at
parsing, what its producer could never have sent.

OrderPlaced has two versions side by side: orders sends v2 (`OrderPlaced`); v1 (`OrderPlacedV1`)
stays for the messages still queued or dead-lettered, and its upcaster below turns each into a v2
before a handler sees it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fastmicro.events import DomainEvent, event, upcaster
from fastmicro.fields import storable
from fastmicro_contracts.money import Currency, Money

SKU_MAX_LENGTH = 64
MAX_QUANTITY = 10_000
MAX_UNIT_PRICE = 10_000_000_000  # minor units: 100 million in a two-decimal currency
MAX_ITEMS = 100
MAX_TOTAL = MAX_ITEMS * MAX_QUANTITY * MAX_UNIT_PRICE  # minor units

Sku = Annotated[str, StringConstraints(min_length=1, max_length=SKU_MAX_LENGTH), AfterValidator(storable)]


class OrderEvent(DomainEvent):
    source: ClassVar[str] = "orders"

    order_id: UUID
    user_id: UUID


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
    unit_price: Annotated[int, Field(ge=0, le=MAX_UNIT_PRICE)]


Items = Annotated[tuple[OrderLine, ...], Field(min_length=1, max_length=MAX_ITEMS)]


@event
class OrderPlacedV1(OrderEvent):
    # No docstring and the title of its day: its committed schema (libs/contracts/schemas/) stays as published.
    model_config = ConfigDict(title="OrderPlaced")

    type: ClassVar[str] = "OrderPlaced"

    items: Items
    total: Annotated[int, Field(ge=0, le=MAX_TOTAL)]
    currency: Currency


@event
class OrderPlaced(OrderEvent):
    """An order was placed: its lines (unit prices in minor units of the total's currency) and its total."""

    type: ClassVar[str] = "OrderPlaced"
    version: ClassVar[int] = 2

    items: Items
    total: Money

    @field_validator("total")
    @classmethod
    def _within_the_producer_s_bound(cls, total: Money) -> Money:
        if total.minor_units > MAX_TOTAL:
            raise ValueError(f"total is over {MAX_TOTAL} minor units")
        return total


@upcaster(OrderPlacedV1, OrderPlaced)
def order_placed_v2(old: OrderPlacedV1) -> OrderPlaced:
    """v1's total in minor units and its currency become one `Money`; the rest is as it was."""
    return OrderPlaced(
        order_id=old.order_id,
        user_id=old.user_id,
        items=old.items,
        total=Money.of_minor_units(old.total, old.currency),
    )


CancelReason = Literal["requested", "user_deleted"]


@event
class OrderCancelled(OrderEvent):
    type: ClassVar[str] = "OrderCancelled"

    reason: CancelReason
