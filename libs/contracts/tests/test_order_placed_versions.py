"""OrderPlaced v1 and v2 side by side: the upcaster between them, and v2's `Money` total (pure logic)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pydantic
import pytest

from fastmicro.events import Envelope, registry
from fastmicro.workspace import find_root
from fastmicro_contracts.currencies import MINOR_UNITS
from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import MAX_TOTAL, OrderLine, OrderPlaced, OrderPlacedV1, order_placed_v2

SCHEMAS = find_root(Path(__file__)) / "libs" / "contracts" / "schemas" / "orders"
LINES = (OrderLine(sku="BOOK-001", quantity=2, unit_price=1250), OrderLine(sku="PEN-42", quantity=1, unit_price=399))


def placed_v1(total: int, currency: str) -> OrderPlacedV1:
    return OrderPlacedV1(order_id=uuid.uuid4(), user_id=uuid.uuid4(), items=LINES, total=total, currency=currency)


@pytest.mark.parametrize(
    ("total", "currency", "amount"),
    [
        (2899, "EUR", "28.99"),
        (2500, "EUR", "25.00"),  # the currency's decimals, zeros included
        (5, "USD", "0.05"),
        (0, "EUR", "0.00"),
        (2749, "JPY", "2749"),  # no minor unit: no decimals
        (1234, "KWD", "1.234"),  # three decimals
        (1999, "XTS", "19.99"),  # a code the table does not know: two decimals, as v1's readers showed it
        (MAX_TOTAL, "JPY", str(MAX_TOTAL)),
        (MAX_TOTAL, "KWD", f"{MAX_TOTAL // 1000}.000"),
    ],
)
def test_the_upcaster_writes_v1_s_minor_units_as_the_currency_s_decimal_amount(
    total: int, currency: str, amount: str
) -> None:
    old = placed_v1(total, currency)

    new = order_placed_v2(old)

    assert new == OrderPlaced(
        order_id=old.order_id, user_id=old.user_id, items=LINES, total=Money(amount=amount, currency=currency)
    )
    assert new.total.minor_units == total


@pytest.mark.parametrize("currency", sorted(MINOR_UNITS))
def test_no_total_of_any_currency_is_changed_by_the_upcast(currency: str) -> None:
    for total in (0, 1, 9, 10, 99, 100, 101, 123_456_789, MAX_TOTAL - 1, MAX_TOTAL):
        assert order_placed_v2(placed_v1(total, currency)).total.minor_units == total


def test_the_registry_reads_v1_as_v2_through_this_upcaster() -> None:
    old = placed_v1(2899, "EUR")

    assert registry.readable_as(OrderPlaced) == [OrderPlaced, OrderPlacedV1]
    assert registry.upcast(old, OrderPlaced) == order_placed_v2(old)
    assert OrderPlaced in registry.newest()  # what orders sends
    assert OrderPlacedV1 not in registry.newest()


def test_the_committed_v1_example_upcast_has_the_v2_shape_and_the_same_order() -> None:
    example = Envelope.model_validate_json((SCHEMAS / "OrderPlaced.v1.example.json").read_bytes())

    new = registry.upcast(OrderPlacedV1.model_validate(example.data), OrderPlaced)

    data: dict[str, Any] = new.model_dump(mode="json")
    assert data == {
        **{key: example.data[key] for key in ("order_id", "user_id", "items")},
        "total": {"amount": "28.99", "currency": "EUR"},
    }
    v2_example = json.loads((SCHEMAS / "OrderPlaced.v2.example.json").read_text())["data"]
    assert set(data) == set(v2_example)
    assert set(data["total"]) == set(v2_example["total"])


@pytest.mark.parametrize(
    ("amount", "currency", "why"),
    [
        ("28.999", "EUR", "more decimals than a EUR minor unit"),
        ("1.5", "JPY", "more decimals than a JPY minor unit"),
        ("-1.00", "EUR", "should match pattern"),
        ("1e3", "EUR", "should match pattern"),
        ("01.00", "EUR", "should match pattern"),
        (" 1.00", "EUR", "should match pattern"),
        ("1.00", "eur", "should match pattern"),
    ],
)
def test_money_refuses_what_no_producer_writes(amount: str, currency: str, why: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=why):
        Money(amount=amount, currency=currency)


def test_money_s_amount_is_a_string_on_the_wire_never_a_number() -> None:
    with pytest.raises(pydantic.ValidationError, match="string"):
        Money.model_validate_json('{"amount": 28.99, "currency": "EUR"}')
    assert Money.model_validate_json('{"amount": "28.90", "currency": "EUR"}').minor_units == 2890
    assert Money.model_validate_json('{"amount": "28.9", "currency": "EUR"}').minor_units == 2890  # fewer is exact


def test_v2_keeps_v1_s_bound_on_the_total() -> None:
    within = Money.of_minor_units(MAX_TOTAL, "EUR")
    over = Money.of_minor_units(MAX_TOTAL + 1, "EUR")

    assert OrderPlaced(order_id=uuid.uuid4(), user_id=uuid.uuid4(), items=LINES, total=within).total == within
    with pytest.raises(pydantic.ValidationError, match="total is over"):
        OrderPlaced(order_id=uuid.uuid4(), user_id=uuid.uuid4(), items=LINES, total=over)
