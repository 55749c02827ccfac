"""The users service: its app and its command line, declared once (fastmicro.service)."""

from __future__ import annotations

from fastmicro.service import Service
from users.api import router
from users.dependencies import Users
from users.settings import UsersSettings

service = Service(
    Users,
    UsersSettings,
    title="fastmicro users",
    description="Registration, login and profile. Publishes UserCreated, UserUpdated and UserDeleted.",
    routers=[router],
)
create_app = service.create_app
