"""The users service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from fastmicro.security import PasswordHasher
from fastmicro.web import create_app as create_service_app
from users.api import router
from users.settings import UsersSettings


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    settings = settings or UsersSettings()
    app = create_service_app(
        settings,
        title="fastmicro users",
        description="Registration, login and profile. Publishes UserCreated, UserUpdated and UserDeleted.",
        routers=[router],
    )
    app.state.password_hasher = PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_cost_kib=settings.password_hash_memory_kib,
        parallelism=settings.password_hash_parallelism,
    )
    return app
