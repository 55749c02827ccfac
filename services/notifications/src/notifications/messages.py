"""What each notification says: subject and plain-text body, from the event that caused it.

Subjects carry no personal data (they stay readable after a user is erased); bodies may.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from fastmicro_contracts.currencies import minor_unit_digits
from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import CancelReason, OrderLine
from notifications.models import OrderId

_CANCEL_REASONS: dict[CancelReason, str] = {
    "requested": "as you asked",
    "user_deleted": "because your account was deleted",
}

SIGNATURE = "\n-- \nfastmicro\n"


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: str


def format_money(minor_units: int, currency: str) -> str:
    """`1234, "USD"` -> `"12.34 USD"`: minor units shown with the currency's own number of decimals."""
    currency = currency.upper()
    digits = minor_unit_digits(currency)
    amount = Decimal(minor_units).scaleb(-digits)
    return f"{amount:,.{digits}f} {currency}"


def welcome(name: str | None) -> Message:
    return Message(
        "Welcome to fastmicro",
        f"{_greeting(name)}\n\nyour fastmicro account is ready. Welcome aboard!\n{SIGNATURE}",
    )


def account_updated(name: str | None, email: str) -> Message:
    return Message(
        "Your fastmicro account was updated",
        f"{_greeting(name)}\n\nthe details of your account ({email}) were changed.\n"
        f"If you did not do this, please contact us.\n{SIGNATURE}",
    )


def order_placed(name: str | None, order_id: OrderId, items: Sequence[OrderLine], total: Money) -> Message:
    """The lines' prices are minor units of the total's currency."""
    currency = total.currency
    lines = "\n".join(
        f"  {item.quantity} x {item.sku} at {format_money(item.unit_price, currency)}"
        f" = {format_money(item.quantity * item.unit_price, currency)}"
        for item in items
    )
    return Message(
        f"Your order {_short(order_id)} is placed",
        f"{_greeting(name)}\n\nthank you for your order {order_id}:\n\n{lines}\n\n"
        f"Total: {format_money(total.minor_units, currency)}\n{SIGNATURE}",
    )


def order_cancelled(name: str | None, order_id: OrderId, reason: CancelReason) -> Message:
    return Message(
        f"Your order {_short(order_id)} is cancelled",
        f"{_greeting(name)}\n\nyour order {order_id} was cancelled {_CANCEL_REASONS[reason]} "
        f"(reason: {reason}).\n{SIGNATURE}",
    )


def _greeting(name: str | None) -> str:
    return f"Hello {name}," if name else "Hello,"


def _short(order_id: OrderId) -> str:
    return order_id.hex[:8]
