"""HTTP request and response bodies of the orders API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from fastmicro.fields import Text, WholeNumber
from fastmicro_contracts.currencies import ACTIVE_CURRENCIES
from fastmicro_contracts.orders import MAX_ITEMS, MAX_QUANTITY, MAX_UNIT_PRICE, SKU_MAX_LENGTH


def _active_currency(code: str) -> str:
    if code not in ACTIVE_CURRENCIES:
        raise ValueError("must be an active ISO 4217 currency code in upper case, such as USD or EUR")
    return code


# The limits are OrderPlaced's: what is accepted here is what every consumer accepts.
Sku = Annotated[str, Text(max_length=SKU_MAX_LENGTH)]
# Whole numbers: 5 and 5.0 are 5; "5", 5.5 and true are refused rather than read as 5 (or 1).
Quantity = Annotated[int, WholeNumber(ge=1, le=MAX_QUANTITY)]
UnitPrice = Annotated[int, WholeNumber(ge=0, le=MAX_UNIT_PRICE), Field(description="Minor units (cents)")]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_active_currency),
    # The document lists the codes, so that it says which are accepted: not every three letters are.
    Field(description="ISO 4217 code", examples=["USD", "EUR"], json_schema_extra={"enum": sorted(ACTIVE_CURRENCIES)}),
]


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: Quantity
    unit_price: UnitPrice


class OrderCreate(BaseModel):
    """What a client orders. Totals are not part of it: the service computes them."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=MAX_ITEMS)]
    currency: Currency = "USD"


class OrderItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    quantity: int
    unit_price: int
    line_total: int


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    user_id: UUID
    status: Literal["placed", "cancelled"]
    items: list[OrderItemOut]
    total: int
    currency: str
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int
    limit: int
    offset: int
