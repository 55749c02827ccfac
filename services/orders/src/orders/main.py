"""The orders service: its app and its command line, declared once (fastmicro.service)."""

from __future__ import annotations

from fastmicro.service import Service
from orders.api import router
from orders.dependencies import Orders
from orders.settings import OrdersSettings

service = Service(
    Orders,
    OrdersSettings,
    title="fastmicro orders",
    description="Places and cancels orders. Publishes OrderPlaced and OrderCancelled; consumes UserDeleted.",
    routers=[router],
    revocations=True,  # learns of deleted users from UserDeleted: their tokens get 401
)
create_app = service.create_app
