"""The OrderPlaced envelope as the orders service writes it to its outbox, for the raw twins."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
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
    """A new OrderPlaced v2 envelope (its own id and time), ready for orjson.

    `total` is in minor units; the envelope carries it as a decimal string of two decimals (the
    bench orders in EUR, and the raw consumer shows amounts with two decimals too).
    """
    return {
        "id": str(uuid.uuid4()),
        "type": "OrderPlaced",
        "version": 2,
        "source": "orders",
        "occurred_at": datetime.now(UTC),
        "correlation_id": correlation_id,
        "causation_id": None,
        "data": {
            "order_id": str(order_id),
            "user_id": str(user_id),
            "items": items,
            "total": {"amount": f"{Decimal(total).scaleb(-2):.2f}", "currency": currency},
        },
    }
