"""The notifications service: its app and its command line, declared once (fastmicro.service)."""

from __future__ import annotations

from fastmicro.service import Service
from notifications.api import router
from notifications.dependencies import Notifications
from notifications.settings import NotificationsSettings

service = Service(
    Notifications,
    NotificationsSettings,
    title="fastmicro notifications",
    description=(
        "Turns user and order events into email over SMTP, and lists each user's notifications. "
        "Consumes UserCreated, UserUpdated, UserDeleted, OrderPlaced and OrderCancelled; publishes nothing."
    ),
    routers=[router],
    revocations=True,  # learns of deleted users from UserDeleted: their tokens get 401
    outbox=False,
)
create_app = service.create_app
