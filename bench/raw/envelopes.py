"""The OrderPlaced envelope as the orders service writes it to its outbox, for the raw twins."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def order_placed(
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    items: list[dict[str, Any]],
    total: int,
    currency: str,
    correlation_id: str,
) -> dict[str, Any]:
    """A new OrderPlaced v1 envelope (its own id and time), ready for orjson."""
    return {
        "id": str(uuid.uuid4()),
        "type": "OrderPlaced",
        "version": 1,
        "source": "orders",
        "occurred_at": datetime.now(UTC),
        "correlation_id": correlation_id,
        "causation_id": None,
        "data": {
            "order_id": str(order_id),
            "user_id": str(user_id),
            "items": items,
            "total": total,
            "currency": currency,
        },
    }
