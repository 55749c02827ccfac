from __future__ import annotations

from fastmicro.errors import AuthorizationError, ConflictError, NotFoundError


class OrderNotFound(NotFoundError):
    """Absent, or someone else's: the answer is the same, so it never tells which orders exist."""

    code = "order_not_found"
    detail = "Order not found"


class OrderNotCancellable(ConflictError):
    code = "order_not_cancellable"
    detail = "The order is already cancelled"


class AccountDeleted(AuthorizationError):
    """The token is still valid, but its account was deleted (UserDeleted arrived)."""

    detail = "The account has been deleted; it can no longer place orders"
