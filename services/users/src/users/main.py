"""The users service's composition root."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from fastmicro.security import PasswordHasher
from fastmicro.tokens import TokenSigner
from fastmicro.web import create_app as create_service_app
from users.api import router
from users.service import Authority
from users.settings import UsersSettings
from users.throttle import ThrottlePolicy


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
    app.state.authority = authority(settings)
    app.state.jwks = settings.public_keys().document()
    return app


def authority(settings: UsersSettings) -> Authority:
    return Authority(
        signer=TokenSigner(
            settings.signing_key(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.jwt_ttl_seconds,
        ),
        throttle=ThrottlePolicy(
            per_account_and_address=settings.login_failures_per_account_and_address,
            per_account=settings.login_failures_per_account,
            per_address=settings.login_failures_per_address,
            window=timedelta(seconds=settings.login_failure_window_seconds),
        ),
        refresh_ttl=timedelta(days=settings.refresh_token_ttl_days),
    )
